"""A tiny artifact (demo data, build-ids, an untrained T5) shared by the API and export tests."""

from pathlib import Path

import torch


def build_tiny_artifact(root: Path) -> Path:
    """Demo playlists -> build-ids (2 x 8 codes) -> an untrained 1+1-layer T5 in seq2seq/."""
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks.artifacts import component_writer
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from text2tracks.modeling import ModelConfig, build_seq2seq, save_seq2seq

    playlists = write_demo_jsonl(root / "demo.jsonl", n_tracks=200, n_playlists=300, seed=0)
    artifact = root / "artifact"
    run_build_ids(playlists, artifact,
                  BuildIDsConfig(min_count=1, n_levels=2, codebook_size=8,
                                 cf=CFConfig(factors=16, iterations=3)),
                  show_progress=False)
    catalog = SemanticIDCatalog.load(artifact / "semantic_ids" / "catalog")
    torch.manual_seed(0)
    config = ModelConfig(d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,
                         dropout=0.0, max_prompt_length=32)
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
    with component_writer(artifact, "seq2seq", {"steps": 0}) as tmp:
        save_seq2seq(model, tokenizer, layout, tmp, config)
    return artifact
