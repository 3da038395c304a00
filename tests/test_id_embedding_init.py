"""ID-token embeddings initialised from the residual k-means centroids
(text2tracks.id_embedding_init) and where training applies it (training.seq2seq_data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from text2tracks.id_embedding_init import (
    codebook_token_rows,
    init_id_embeddings,
    projected_codebooks,
)
from text2tracks.modeling import ModelConfig, build_seq2seq

LEVELS = (8, 8, 4)  # two residual levels of 8 codes, then the collision digit
TINY = dict(d_model=64, num_layers=1, num_decoder_layers=1, num_heads=4, d_ff=64)


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_seq2seq(ModelConfig(tokenizer="bytes", **TINY), LEVELS)


def _codebooks() -> np.ndarray:
    """Level 0: codes 0 and 1 almost equal, code 2 their opposite; the rest random."""
    rng = np.random.default_rng(1)
    books = rng.normal(size=(2, 8, 16))
    books[0, 1] = books[0, 0] + 0.01 * rng.normal(size=16)
    books[0, 2] = -books[0, 0]
    return books


def _cos(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_codes_start_where_their_centroids_are():
    model, _, layout = _model()
    weight = model.get_decoder().get_input_embeddings().weight
    before = weight.detach().clone()
    rows = codebook_token_rows(layout, LEVELS, 2)
    assert rows.shape == (2, 8) and len(set(rows.ravel().tolist())) == 16
    assert init_id_embeddings(model, layout, LEVELS, _codebooks()) == 16
    after = weight.detach()
    e = after[torch.as_tensor(rows[0])]
    assert _cos(e[0], e[1]) > 0.99 and _cos(e[0], e[2]) < -0.99
    # the rows keep their scale; every other row (prompt tokens, collision digit) is unchanged
    set_rows = torch.as_tensor(rows.ravel())
    assert float(after[set_rows].std()) == pytest.approx(float(before[set_rows].std()), rel=0.01)
    others = torch.ones(len(after), dtype=torch.bool)
    others[set_rows] = False
    assert torch.equal(after[others], before[others])
    digit = layout.codes_to_token_ids(np.array([[0, 0, 3]]))[0, 2]
    assert torch.equal(after[digit], before[digit])
    # T5 ties encoder, decoder and output layer: one matrix
    assert model.get_input_embeddings().weight is weight


def test_the_projection_is_fixed_and_keeps_angles():
    books = _codebooks()
    a, b = projected_codebooks(books, 256, seed=0), projected_codebooks(books, 256, seed=0)
    assert np.array_equal(a, b) and not np.array_equal(a, projected_codebooks(books, 256, seed=1))
    flat, proj = books.reshape(16, -1), a.reshape(16, -1)

    def cos(m):
        unit = m / np.linalg.norm(m, axis=1, keepdims=True)
        return unit @ unit.T

    assert np.abs(cos(flat) - cos(proj)).max() < 0.3  # a random projection keeps angles roughly


def test_codebooks_of_other_ids_are_refused():
    model, _, layout = _model()
    with pytest.raises(ValueError, match="--id-init random"):
        init_id_embeddings(model, layout, LEVELS, np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="--id-init random"):
        init_id_embeddings(model, layout, LEVELS, np.zeros((8, 16)))


def test_training_starts_from_the_artifacts_centroids_only_for_its_own_ids(tmp_path):
    from tiny_artifact import build_tiny_artifact

    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.residual_kmeans import ResidualKMeans
    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import init_ids_from_codebooks

    art = build_tiny_artifact(tmp_path)  # IDs of 2 x 8 codes (and an untrained model)
    playlists = tmp_path / "demo.jsonl"
    catalog = SemanticIDCatalog.load(art / "semantic_ids" / "catalog")
    books = ResidualKMeans.load(art / "semantic_ids" / "residual_kmeans").codebooks_
    messages: list[str] = []

    def embeddings(id_init, artifact=art):
        torch.manual_seed(0)
        model, _, layout = build_seq2seq(
            ModelConfig(tokenizer="bytes", **TINY), catalog.level_sizes
        )
        config = TrainConfig(artifact=str(artifact), playlists=str(playlists), id_init=id_init)
        init_ids_from_codebooks(config, model, layout, catalog, messages.append)
        return model.get_input_embeddings().weight.detach(), layout

    random, layout = embeddings("random")
    centroids, _ = embeddings("codebooks")
    rows = torch.as_tensor(codebook_token_rows(layout, catalog.level_sizes, 2).ravel())
    assert not torch.equal(random[rows], centroids[rows])
    want = projected_codebooks(books, random.shape[1]).reshape(len(rows), -1)
    got = centroids[rows].numpy()
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999
    assert messages == ["id init: 16 ID-token embeddings from the residual k-means centroids"]

    # the ablation's random IDs come without the quantiser: their tokens start random
    from eval.ablation_artifacts import ablation_artifact

    variant = ablation_artifact(art, tmp_path / "random_ids", "random", seed=0)
    assert not (variant / "semantic_ids" / "residual_kmeans").exists()
    unchanged, _ = embeddings("codebooks", variant)
    assert torch.equal(unchanged, random)
    with pytest.raises(ValueError, match="id_init must be one of"):
        TrainConfig(artifact="a", playlists="p", id_init="centroids")
