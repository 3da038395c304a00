"""A tiny artifact (demo data, build-ids, an untrained T5) shared by the API and export tests."""

from pathlib import Path

import torch

# the tiny model's shape as training flags, for tests that train through a command line
TINY_MODEL_FLAGS = (
    *("--d-model", "32", "--num-layers", "1", "--num-decoder-layers", "1"),
    *("--num-heads", "2", "--d-ff", "64"),
)


def train_tiny_on_demo(root: Path, *flags: str) -> tuple[Path, Path]:
    """Demo playlists (150 x 120 tracks) -> build-ids (2 x 8 codes, 8 CF factors) -> 4 training
    steps of the tiny model with ``flags`` (one thread; the torch thread count restored).
    Returns ``(playlists, artifact)``."""
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from training.train_seq2seq import train

    playlists = write_demo_jsonl(root / "demo.jsonl", n_tracks=120, n_playlists=150, seed=0)
    art = root / "artifact"
    ids = BuildIDsConfig(
        n_levels=2, codebook_size=8, kmeans_iterations=5, cf=CFConfig(factors=8, iterations=3)
    )
    run_build_ids(playlists, art, ids, show_progress=False)
    threads = torch.get_num_threads()
    try:
        train(tiny_train_config(playlists, art, *flags))
    finally:
        torch.set_num_threads(threads)
    return playlists, art


def tiny_train_config(playlists: Path, art: Path, *flags: str):
    """The TrainConfig :func:`train_tiny_on_demo` trains with (4 steps of the tiny model)."""
    from training.train_seq2seq import build_parser, config_from_args

    argv = [
        *("--artifact", str(art), "--playlists", str(playlists), "--max-steps", "4"),
        *("--eval-every", "0", "--eval-prompts", "8", "--batch-size", "16", "--lr", "1e-2"),
        *("--warmup-steps", "0", "--num-threads", "1", "--no-progress", "--tokenizer", "bytes"),
        *TINY_MODEL_FLAGS,
        *flags,
    ]
    return config_from_args(build_parser().parse_args(argv))


def tiny_model_config(**changes):
    """The ModelConfig of the tiny artifact's T5 (1+1 layers, d_model 32, byte tokenizer)."""
    from text2tracks.modeling import ModelConfig

    fields = dict(
        d_model=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        d_ff=64,
        dropout=0.0,
        max_prompt_length=32,
        tokenizer="bytes",
    )
    return ModelConfig(**{**fields, **changes})


def build_tiny_artifact(root: Path) -> Path:
    """Demo playlists -> build-ids (2 x 8 codes) -> an untrained 1+1-layer T5 in seq2seq/."""
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks.artifacts import component_writer
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from text2tracks.modeling import build_seq2seq, save_seq2seq

    playlists = write_demo_jsonl(root / "demo.jsonl", n_tracks=200, n_playlists=300, seed=0)
    artifact = root / "artifact"
    run_build_ids(
        playlists,
        artifact,
        BuildIDsConfig(
            min_count=1, n_levels=2, codebook_size=8, cf=CFConfig(factors=16, iterations=3)
        ),
        show_progress=False,
    )
    catalog = SemanticIDCatalog.load(artifact / "semantic_ids" / "catalog")
    torch.manual_seed(0)
    config = tiny_model_config()
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
    with component_writer(artifact, "seq2seq", {"steps": 0}) as tmp:
        save_seq2seq(model, tokenizer, layout, tmp, config)
    return artifact


# A diffusion component whose right answer is known. The CF item factors of cf/ are replaced by
# designed ones: a track of genre g sits at SCALE * e_g (plus a little noise), one axis per
# genre. The head learns p(latent | prompt) from pairs (a genre's phrase -> its axis; a "party"
# phrase -> the rock axis or the pop axis, half and half), conditioned on the tiny T5's frozen
# encoder, as training.train_diffusion does with --encoder seq2seq.
DIFFUSION_SCALE = 3.0
PARTY_PROMPTS = ("party", "party mix", "party time")
PARTY_GENRES = ("rock", "pop")


def genre_of(track_id: str) -> str:
    """The genre a demo track id spells (``demo:<genre>:<mood>:<era>:<index>``)."""
    from semantic_ids.demo import demo_track_tags

    return demo_track_tags(track_id)["genre"]


def add_tiny_diffusion(artifact: Path, steps: int = 500, seed: int = 0) -> Path:
    """Replace ``cf/item_factors.npy`` by genre-clustered factors and train a tiny diffusion head
    into ``diffusion/`` (no fusion.json: tests write the fusion they need). A few seconds on CPU."""
    import numpy as np

    from semantic_ids.demo import GENRE_PHRASES, GENRES
    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import component_writer
    from text2tracks.diffusion import DiffusionHead, DiffusionHeadConfig, FrozenSeq2SeqEncoder
    from text2tracks.modeling import load_seq2seq

    rng = np.random.default_rng(seed)
    vocab = ItemVocab.load(artifact / "cf")
    dim = np.load(artifact / "cf" / "item_factors.npy").shape[1]
    centers = np.zeros((len(GENRES), dim), dtype=np.float32)
    centers[np.arange(len(GENRES)), np.arange(len(GENRES))] = DIFFUSION_SCALE
    genres = np.array([GENRES.index(genre_of(t)) for t in vocab.item_ids])
    factors = centers[genres] + 0.3 * rng.normal(size=(len(genres), dim)).astype(np.float32)
    np.save(artifact / "cf" / "item_factors.npy", factors.astype(np.float32), allow_pickle=False)

    prompts = [p for g in GENRES for p in GENRE_PHRASES[g]] + list(PARTY_PROMPTS)
    labels = [GENRES.index(g) for g in GENRES for _ in GENRE_PHRASES[g]] + [-1] * len(PARTY_PROMPTS)
    model, tokenizer, _ = load_seq2seq(artifact / "seq2seq")
    encoder = FrozenSeq2SeqEncoder(model, tokenizer)
    with torch.no_grad():
        conds = encoder.encode(prompts)
    n = 4000
    pick = rng.integers(0, len(prompts), n)
    label = np.asarray(labels)[pick]
    party = np.asarray([GENRES.index(g) for g in PARTY_GENRES])[rng.integers(0, 2, n)]
    label = np.where(label >= 0, label, party)
    latents = torch.tensor(centers[label] + 0.3 * rng.normal(size=(n, dim)), dtype=torch.float32)
    cond = conds[torch.from_numpy(pick)]

    torch.manual_seed(seed)
    head = DiffusionHead(
        DiffusionHeadConfig(
            latent_dim=dim,
            cond_dim=encoder.out_dim,
            hidden=64,
            n_blocks=2,
            time_embed_dim=32,
            cond_drop_prob=0.2,
            guidance_weight=2.0,
            ddim_steps=10,
        )
    )
    head.set_latent_stats(latents)
    target = head.standardise(latents)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    head.train()
    for _ in range(steps):
        batch = torch.randint(0, n, (256,), generator=generator)
        loss = head(target[batch], cond[batch], generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    head.encoder = encoder  # saved as kind "seq2seq": its weights stay in seq2seq/
    with component_writer(
        artifact, "diffusion", {"kind": "diffusion_head", "encoder": "seq2seq"}
    ) as tmp:
        head.save(tmp)
    return artifact


def tiny_t5(seed: int = 0, vocab_size: int = 64, d_model: int = 32, num_layers: int = 2):
    """A T5 built from a config (no download), ids 0 pad / 1 EOS, seeded; heads of width
    ``d_model // 4``."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_decoder_layers=num_layers,
        num_heads=4,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config)


def build_synthetic_artifact(root: Path, forms=("mpd", "parquet"), **synthetic) -> Path:
    """A synthetic MPD-shaped set written under ``root`` in ``forms`` (``root / "mpd"`` ...) and
    a 2 x 16 artifact built from its MPD slices; returns the artifact folder."""
    from semantic_ids.cf import CFConfig
    from semantic_ids.synthetic import SyntheticConfig, write_synthetic
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    write_synthetic(SyntheticConfig(**synthetic), root, forms)
    artifact = root / "artifact"
    run_build_ids(
        root / "mpd",
        artifact,
        BuildIDsConfig(
            min_count=2, n_levels=2, codebook_size=16, cf=CFConfig(factors=8, iterations=2)
        ),
        show_progress=False,
    )
    return artifact
