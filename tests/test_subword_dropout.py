"""BPE-dropout of training prompts (text2tracks.prompt_tokens.SubwordDropout) and its place in
training (training.seq2seq_data.TrainEpochs)."""

from __future__ import annotations

import numpy as np
import pytest

from text2tracks.data import Seq2SeqCollator, Seq2SeqPairs
from text2tracks.modeling import ModelConfig, train_subword_tokenizer
from text2tracks.prompt_tokens import SubwordDropout, encode_prompts, normalize_prompt

WORDS = ["summer", "chill", "workout", "road", "trip", "party", "rainy", "sunday", "beats"]


def _titles(n: int = 300, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 4))) for _ in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_subword_tokenizer([normalize_prompt(t) for t in _titles()], vocab_size=400)


def _texts() -> list[str]:
    odd = ["", "sümmer 🎉🎉 chill", "aaaa aaa", "road-trip!!", "日本語 の うた", "x" * 300]
    return [normalize_prompt(t) for t in _titles(200, seed=1) + odd]


def test_without_dropout_the_segmentation_is_the_tokenizers(tokenizer):
    texts = _texts()
    got = SubwordDropout(tokenizer, 0.0).encode(texts, 16, np.random.default_rng(0))
    want = encode_prompts(tokenizer, texts, 16, normalize=False)
    assert all(
        g.dtype == np.int64 and g.tolist() == w.tolist() for g, w in zip(got, want, strict=True)
    )
    assert max(len(g) for g in got) == 16  # the long one is cut, EOS kept


def test_dropout_resegments_the_same_text(tokenizer):
    texts = _texts()[:-1]  # not the one cut at max_length
    mean_length = {}
    for p in (0.0, 0.1, 0.5):
        got = SubwordDropout(tokenizer, p).encode(texts, 512, np.random.default_rng(3))
        for text, ids in zip(texts, got, strict=True):
            assert ids[-1] == tokenizer.eos_token_id
            # the pieces spell the text (the byte-level pre-tokenizer's words, joined)
            pieces = "".join(tokenizer.convert_ids_to_tokens(ids[:-1].tolist()))
            words = tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
            assert pieces == "".join(w for w, _ in words)
        mean_length[p] = np.mean([len(g) for g in got])
    assert mean_length[0.0] < mean_length[0.1] < mean_length[0.5]


def test_the_draw_is_seeded(tokenizer):
    texts = _texts()
    dropout = SubwordDropout(tokenizer, 0.3)

    def draw(seed):
        return [g.tolist() for g in dropout.encode(texts, 64, np.random.default_rng(seed))]

    assert draw(5) == draw(5)
    assert draw(5) != draw(6)
    # one text seen twice gets two draws
    twice = dropout.encode(["summer workout party"] * 50, 64, np.random.default_rng(0))
    assert len({tuple(t.tolist()) for t in twice}) > 1


def test_bad_input_is_named(tokenizer):
    from transformers import ByT5Tokenizer

    for p in (-0.1, 1.0, True):
        with pytest.raises(ValueError, match="subword dropout must be in"):
            SubwordDropout(tokenizer, p)
    with pytest.raises(ValueError, match="byte-level BPE"):
        SubwordDropout(ByT5Tokenizer(), 0.1)


def test_the_training_config_checks_the_tokenizer():
    from training.seq2seq_config import TrainConfig

    with pytest.raises(ValueError, match="subword_dropout must be in"):
        TrainConfig(artifact="a", playlists="p", subword_dropout=1.5)
    with pytest.raises(ValueError, match="--subword-dropout 0"):
        TrainConfig(
            artifact="a", playlists="p", subword_dropout=0.1, model=ModelConfig(tokenizer="bytes")
        )
    assert TrainConfig(artifact="a", playlists="p", subword_dropout=0.1).subword_dropout == 0.1


def test_each_epoch_reads_its_own_segmentation_and_a_resume_reads_the_same(tokenizer):
    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import TrainEpochs

    titles = _titles(40, seed=2)
    config = TrainConfig(
        artifact="a", playlists="p", subword_dropout=0.5, targets_per_playlist=2, batch_size=4
    )
    plain = encode_prompts(tokenizer, titles, config.model.max_prompt_length)

    def build():
        sid_tokens = np.arange(10 * 2, dtype=np.int64).reshape(10, 2) + 1000
        relevant = [[i % 10, (i + 3) % 10] for i in range(len(titles))]
        pairs = Seq2SeqPairs(
            plain, relevant, sid_tokens, 1, targets_per_playlist=2, seed=0,
            group_size=2, bucket_batches=2, batch_size=4,
        )  # fmt: skip
        collate = Seq2SeqCollator(plain, sid_tokens, 0, 1, share_prompts=True)
        epochs = TrainEpochs(config, {"train_prompts": titles}, tokenizer, pairs, collate)
        return epochs, pairs, collate

    epochs, pairs, collate = build()
    seen = {}
    for epoch in (0, 1):
        epochs.start(epoch)
        seen[epoch] = [p.tolist() for p in pairs.prompt_ids]
        assert [p.tolist() for p in collate.prompt_ids] == seen[epoch]
        assert pairs.epoch == epoch and pairs.prompt_length.tolist() == [
            len(p) for p in seen[epoch]
        ]
        batch = collate([pairs[i] for i in range(4)])
        rows = batch["input_ids"][batch["prompt_index"]].numpy()
        for row, playlist in zip(rows, batch["playlist_index"].tolist(), strict=True):
            assert row[row != 0].tolist() == seen[epoch][playlist]
    assert seen[0] != [p.tolist() for p in plain] and seen[0] != seen[1]
    order = pairs.example_playlist.copy()
    # a resumed run (fresh objects, straight to epoch 1) reads epoch 1 as the first run did
    again, again_pairs, _ = build()
    again.start(1)
    assert [p.tolist() for p in again_pairs.prompt_ids] == seen[1]
    assert again_pairs.example_playlist.tolist() == order.tolist()
