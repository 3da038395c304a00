"""Content IDs ("artist - title" bytes under the trie): codes, tokens, decoding, training, artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semantic_ids.catalog import SemanticIDCatalog
from semantic_ids.content_ids import (
    BYTE_LEVEL_SIZE,
    END_CODE,
    content_catalog,
    content_codes,
    content_stats,
    content_text,
    id_token_counts,
    truncate_utf8,
)
from text2tracks.decoding import SIDConstraintProcessor, constrained_generate, dense_levels
from text2tracks.modeling import (
    ModelConfig,
    build_seq2seq,
    load_seq2seq,
    save_seq2seq,
    sid_token_indices,
)
from text2tracks.tokens import (
    SID_END_ID,
    SID_END_TOKEN,
    SIDTokenLayout,
    add_content_tokens,
    add_sid_tokens,
)
from text2tracks.trie import FlatTrie

TINY = ModelConfig(
    d_model=32,
    num_layers=1,
    num_decoder_layers=1,
    num_heads=2,
    d_ff=64,
    dropout=0.0,
    max_prompt_length=32,
)
TRACKS = [  # (name, artist)
    ("Dancing Queen", "ABBA"),
    ("Dancing Queen (Live)", "ABBA"),
    ("Lose Yourself", "Eminem"),
    ("夏の歌", "ヨルシカ"),
    ("Смуглянка", "Хор"),
    ("Rain 🌧️", "Lo-fi Beats"),
    ("Rainbow", "Lo-fi Beats"),
    ("One", "U2"),
    ("One", "Metallica"),
]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def decode_text(codes_row) -> str:
    """The string a content ID spells (its bytes before END)."""
    data = bytes(int(c) for c in codes_row[:-1] if c != END_CODE)
    return data.decode("utf-8")


# ------------------------------------------------------------------------------ codes


def test_content_text_normalises_and_falls_back():
    assert content_text("Dancing  Queen\n", " ABBA") == "ABBA - Dancing Queen"
    # NFD "é" (e + combining accent) becomes the single NFC code point
    assert content_text("Cafe\u0301", "X") == "X - Caf\u00e9"
    assert content_text("Song", None) == "Song"
    assert content_text(None, "  ") == ""
    assert content_text(None, None, "spotify:track:1") == "spotify:track:1"
    assert content_text("", "", "id7") == "id7"


def test_truncation_never_splits_a_character():
    assert truncate_utf8("abc", 8) == b"abc"
    # "😀" is 4 bytes: 2 + 4 = 6 > 5, so the emoji goes whole
    assert truncate_utf8("ab😀c", 5) == b"ab"
    assert truncate_utf8("ab😀c", 6) == "ab😀".encode()
    # Cyrillic (2 bytes each) and CJK (3 bytes each)
    assert truncate_utf8("Хор", 5) == "Хо".encode()
    assert truncate_utf8("夏の歌", 7) == "夏の".encode()
    for text in ("夏の歌 summer", "Смуглянка", "Rain 🌧️ 🌧️", "ab😀c"):
        for max_bytes in range(1, 24):
            cut = truncate_utf8(text, max_bytes)
            assert len(cut) <= max_bytes
            assert text.startswith(cut.decode("utf-8"))  # decodes: no broken character


def test_codes_pad_with_end_and_order_collision_digits_by_popularity():
    texts = ["ab", "ab", "abc", "夏", "ab", "xyzw"]
    popularity = np.array([5, 9, 1, 2, 5, 3])
    codes, sizes = content_codes(texts, popularity, max_bytes=3)
    assert codes.shape == (6, 4) and codes.dtype == np.int64
    assert sizes == (BYTE_LEVEL_SIZE,) * 3 + (3,)
    assert codes[0, :3].tolist() == [ord("a"), ord("b"), END_CODE]
    assert codes[2, :3].tolist() == [ord("a"), ord("b"), ord("c")]  # fills all levels, no END
    assert codes[3, :3].tolist() == list("夏".encode())
    assert codes[5, :3].tolist() == [ord("x"), ord("y"), ord("z")]  # truncated
    # group "ab": item 1 (9 plays) first, then 0 and 4 (5 each, by index); others alone
    assert codes[:, -1].tolist() == [1, 0, 0, 0, 2, 0]
    assert len({tuple(r) for r in codes.tolist()}) == 6  # full IDs are unique
    assert [decode_text(r) for r in codes] == ["ab", "ab", "abc", "夏", "ab", "xyz"]
    # real bytes + END (when shorter than the byte levels) + digit + EOS
    assert id_token_counts(codes).tolist() == [5, 5, 5, 5, 5, 5]
    stats = content_stats(texts, codes)
    assert stats["share_truncated"] == pytest.approx(1 / 6)
    assert stats["largest_group"] == 3
    assert stats["share_collision_digit_nonzero"] == pytest.approx(2 / 6)
    assert stats["shared_share"] == pytest.approx(3 / 6)
    assert stats["mean_bytes"] == pytest.approx(np.mean([2, 2, 3, 3, 2, 4]))
    assert stats["decode_steps"] == 5


def test_codes_argument_errors():
    with pytest.raises(ValueError, match="popularity"):
        content_codes(["a", "b"], np.ones(3))
    with pytest.raises(ValueError, match="max_bytes"):
        content_codes(["a"], np.ones(1), max_bytes=0)


@pytest.mark.parametrize("seed", range(3))
def test_random_strings_get_unique_ids_that_spell_their_prefix(seed):
    rng = np.random.default_rng(seed)
    alphabet = list("ab é夏😀-")
    texts = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 9)))) for _ in range(300)]
    popularity = rng.integers(0, 5, size=300)
    codes, sizes = content_codes(texts, popularity, max_bytes=6)
    assert len({tuple(r) for r in codes.tolist()}) == 300
    for text, row in zip(texts, codes, strict=True):
        assert decode_text(row) == truncate_utf8(text, 6).decode()
    FlatTrie.from_codes(codes, sizes)  # a valid fixed-depth trie


def test_content_catalog_scheme_round_trip(tmp_path):
    ids = [f"t{i}" for i in range(len(TRACKS))]
    catalog, stats = content_catalog(
        ids,
        [n for n, _ in TRACKS],
        [a for _, a in TRACKS],
        np.arange(len(TRACKS))[::-1],
        max_bytes=16,
    )
    assert catalog.scheme == "bytes" and catalog.depth == 17 and stats["tracks"] == len(TRACKS)
    assert decode_text(catalog.sid_codes[7]) == "U2 - One"
    assert decode_text(catalog.sid_codes[0]) == "ABBA - Dancing Q"  # 16 bytes
    assert catalog.sid_codes[[0, 1], -1].tolist() == [0, 1]  # same 16 bytes: item 0 more played
    np.testing.assert_array_equal(catalog.items_for_codes(catalog.sid_codes), np.arange(len(ids)))
    probe = catalog.sid_codes[:2].copy()
    probe[:, 3] = 7
    assert catalog.items_for_codes(probe).tolist() == [-1, -1]
    catalog.save(tmp_path / "cat")
    assert json.loads((tmp_path / "cat" / "config.json").read_text())["scheme"] == "bytes"
    loaded = SemanticIDCatalog.load(tmp_path / "cat")
    assert loaded.scheme == "bytes" and loaded.level_sizes == catalog.level_sizes
    np.testing.assert_array_equal(loaded.sid_codes, catalog.sid_codes)
    stats = loaded.stats()
    assert stats["scheme"] == "bytes" and len(stats["levels"]) == 16


def test_old_catalogue_without_scheme_loads_as_sid(tmp_path):
    cat = SemanticIDCatalog.build(
        ["a", "b", "c"], np.array([[0, 1], [0, 1], [1, 0]]), np.array([1, 2, 3]), codebook_sizes=2
    )
    assert cat.scheme == "sid"
    cat.save(tmp_path / "cat")
    config_path = tmp_path / "cat" / "config.json"
    config = json.loads(config_path.read_text())
    del config["scheme"]
    config_path.write_text(json.dumps(config))
    assert SemanticIDCatalog.load(tmp_path / "cat").scheme == "sid"
    with pytest.raises(ValueError, match="scheme"):
        SemanticIDCatalog(["a"], np.zeros((1, 2), dtype=int), (1, 1), scheme="words")
    with pytest.raises(ValueError, match="byte levels"):
        SemanticIDCatalog(["a"], np.zeros((1, 2), dtype=int), (256, 1), scheme="bytes")


# ------------------------------------------------------------------------------ tokens


def test_bytes_layout_maps_byte_b_to_b_plus_3_and_end_to_259():
    sizes = (BYTE_LEVEL_SIZE,) * 12 + (3,)
    model, tokenizer, layout = build_seq2seq(TINY, sizes, scheme="bytes")
    assert layout.scheme == "bytes"
    assert layout.offsets == (3,) * 12 + (260,)
    assert tokenizer.convert_tokens_to_ids(SID_END_TOKEN) == SID_END_ID == 259
    assert [tokenizer.convert_tokens_to_ids(f"<sid_12_{c}>") for c in range(3)] == [260, 261, 262]
    assert len(tokenizer) == layout.end_id == 263 == model.get_input_embeddings().num_embeddings
    codes, _ = content_codes(["Été 😀"], np.ones(1), max_bytes=12)
    token_ids = layout.codes_to_token_ids(codes)[0]
    utf8 = "Été 😀".encode()
    # the decoder's byte tokens are exactly the ids the encoder reads for the same text
    assert (
        token_ids[: len(utf8)].tolist()
        == tokenizer("Été 😀", add_special_tokens=False)["input_ids"]
    )
    assert token_ids[len(utf8)] == 259  # END
    assert token_ids[-1] == 260  # digit 0
    np.testing.assert_array_equal(layout.token_ids_to_codes(token_ids[None, :]), codes)
    # LoRA would train every token the IDs are written with: bytes, END, digits
    assert sid_token_indices(layout) == list(range(3, 263))
    assert model.generation_config.max_new_tokens == 14
    assert layout.tokens()[0] == SID_END_TOKEN and len(layout.tokens()) == 4


def test_layout_dict_round_trip_and_old_files():
    layout = SIDTokenLayout((BYTE_LEVEL_SIZE,) * 4 + (2,), (3,) * 4 + (260,), "bytes")
    assert SIDTokenLayout.from_dict(json.loads(json.dumps(layout.to_dict()))) == layout
    old = {"level_sizes": [4, 4, 2], "offsets": [384, 388, 392]}
    assert SIDTokenLayout.from_dict(old).scheme == "sid"
    with pytest.raises(ValueError, match="scheme"):
        SIDTokenLayout((4,), (3,), "words")
    with pytest.raises(ValueError, match="byte levels"):
        SIDTokenLayout((BYTE_LEVEL_SIZE, 2), (5, 260), "bytes")


def test_non_byte_tokenizers_are_refused_naming_the_fix():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import ByT5Tokenizer, PreTrainedTokenizerFast

    sizes = (BYTE_LEVEL_SIZE,) * 4 + (2,)
    words = Tokenizer(WordLevel({"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3}, unk_token="<unk>"))
    words.pre_tokenizer = Whitespace()
    word_tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )
    with pytest.raises(ValueError, match="byte-level tokenizer"):
        add_content_tokens(word_tokenizer, sizes)
    sentinels = ByT5Tokenizer()  # extra_ids hold ids 259..383
    before = len(sentinels)
    with pytest.raises(ValueError, match=r"<sid_end> must be token 259.*extra_ids=0"):
        add_content_tokens(sentinels, sizes)
    assert len(sentinels) == before  # nothing added on failure
    semantic = ByT5Tokenizer(extra_ids=0)
    add_sid_tokens(semantic, (4, 2))  # id 259 already taken by <sid_0_0>
    with pytest.raises(ValueError, match="must be token 259"):
        add_content_tokens(semantic, sizes)
    with pytest.raises(ValueError, match="level sizes"):
        add_content_tokens(ByT5Tokenizer(extra_ids=0), (256, 2))


def test_model_save_load_keeps_the_bytes_layout(tmp_path):
    sizes = (BYTE_LEVEL_SIZE,) * 6 + (2,)
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(TINY, sizes, scheme="bytes")
    save_seq2seq(model.eval(), tokenizer, layout, tmp_path / "m", TINY)
    saved = json.loads((tmp_path / "m" / "sid_layout.json").read_text())
    assert saved["scheme"] == "bytes"
    loaded, tokenizer2, layout2 = load_seq2seq(tmp_path / "m")
    assert layout2 == layout and len(tokenizer2) == len(tokenizer)
    assert tokenizer2("夏 🔥")["input_ids"] == tokenizer("夏 🔥")["input_ids"]
    # a layout file that disagrees with the tokenizer is refused
    saved["offsets"][-1] = 300
    (tmp_path / "m" / "sid_layout.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="do not match"):
        load_seq2seq(tmp_path / "m")


def test_lora_on_a_byt5_base_covers_the_byte_rows(tmp_path):
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    base_tokenizer = ByT5Tokenizer()  # a pretrained ByT5 keeps its 125 sentinels
    config = T5Config(
        vocab_size=len(base_tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        decoder_start_token_id=0,
        dropout_rate=0.0,
    )
    T5ForConditionalGeneration(config).save_pretrained(tmp_path / "base")
    base_tokenizer.save_pretrained(tmp_path / "base")
    sizes = (BYTE_LEVEL_SIZE,) * 4 + (2,)
    lora = ModelConfig(base=str(tmp_path / "base"), lora=True, lora_r=2, lora_alpha=4)
    model, tokenizer, layout = build_seq2seq(lora, sizes, scheme="bytes")
    assert layout.offsets == (3,) * 4 + (260,) and len(tokenizer) == 262
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens" in n for n in trainable)
    indices = model.peft_config["default"].trainable_token_indices
    assert all(rows == list(range(3, 262)) for rows in indices.values())  # bytes, END, digits
    assert "shared" in indices
    save_seq2seq(model, tokenizer, layout, tmp_path / "lora", lora)
    _, _, layout2 = load_seq2seq(tmp_path / "lora")
    assert layout2 == layout


# ------------------------------------------------------------------------------ decoding


def small_content_trie(max_bytes=12):
    ids = [f"t{i}" for i in range(len(TRACKS))]
    catalog, _ = content_catalog(
        ids,
        [n for n, _ in TRACKS],
        [a for _, a in TRACKS],
        np.arange(len(TRACKS))[::-1],
        max_bytes=max_bytes,
    )
    return catalog, FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)


@pytest.mark.parametrize("seed", range(4))
def test_untrained_model_decodes_only_real_content_ids(seed):
    catalog, trie = small_content_trie()
    torch.manual_seed(seed)
    model, tokenizer, layout = build_seq2seq(TINY, catalog.level_sizes, scheme="bytes")
    enc = tokenizer(["summer", "夏の歌 please", "rap 🔥"], padding=True, return_tensors="pt")
    k = 5
    items, scores = constrained_generate(
        model, enc["input_ids"], enc["attention_mask"], trie, layout, k=k
    )
    assert items.shape == (3, k) and np.isfinite(scores).all()
    for row in items:
        assert len(set(row.tolist())) == k and ((row >= 0) & (row < len(catalog))).all()
    # exclusions still leave k real items
    exclude = [[0, 1, 2], [], list(range(4))]
    items_x, _ = constrained_generate(
        model, enc["input_ids"], enc["attention_mask"], trie, layout, k=k, exclude=exclude
    )
    for row, ex in zip(items_x, exclude, strict=True):
        assert len(set(row.tolist())) == k and not set(row.tolist()) & set(ex)


@pytest.mark.parametrize("collide", [False, True], ids=["fingerprints", "all-collide"])
@pytest.mark.parametrize("exclude", [False, True])
def test_incremental_prefix_nodes_match_a_full_walk(exclude, collide, monkeypatch):
    """During generate the processor never walks from the root after step 0, and its masks equal
    those of a fresh processor that does. If every fingerprint collided, the token-by-token
    check would send it back to full walks, with the same masks."""
    catalog, trie = small_content_trie()
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(TINY, catalog.level_sizes, scheme="bytes")
    enc = tokenizer(["summer", "rap"], padding=True, return_tensors="pt")
    excl = [[0, 3], [5]] if exclude else None
    walked, masks = [], []
    original_walk = SIDConstraintProcessor._walk
    original_call = SIDConstraintProcessor.__call__

    def walk(self, codes, prow, d):
        walked.append(codes.shape[1])
        return original_walk(self, codes, prow, d)

    def call(self, input_ids, scores):
        out = original_call(self, input_ids, scores)
        masks.append((input_ids.clone(), torch.isfinite(out)))
        return out

    monkeypatch.setattr(SIDConstraintProcessor, "_walk", walk)
    monkeypatch.setattr(SIDConstraintProcessor, "__call__", call)
    if collide:
        monkeypatch.setattr(
            SIDConstraintProcessor,
            "_row_hash",
            staticmethod(lambda codes, weights: torch.zeros(codes.shape[0])),
        )
    constrained_generate(
        model, enc["input_ids"], enc["attention_mask"], trie, layout, k=4, num_beams=4, exclude=excl
    )
    if collide:
        assert len(walked) > 1 and walked[0] == 0  # fell back to walks from the root
    else:
        assert walked == [0]  # the root walk of step 0 only
    monkeypatch.setattr(SIDConstraintProcessor, "__call__", original_call)
    vocab = masks[0][1].shape[1]
    for input_ids, mask in masks:
        fresh = SIDConstraintProcessor(
            trie, layout, tokenizer.eos_token_id, tokenizer.pad_token_id, exclude=excl, num_beams=4
        )
        assert torch.equal(fresh.allowed_mask(input_ids, vocab), mask)


def test_dense_tables_are_budgeted_over_the_whole_trie():
    _, trie = small_content_trie()
    sizes = [trie.n_parents(lv) * trie.level_sizes[lv] for lv in range(trie.depth)]
    assert dense_levels(trie, 1 << 30) == [True] * trie.depth
    assert dense_levels(trie, 0) == [False] * trie.depth
    budget = sum(sizes[:3])
    plan = dense_levels(trie, budget)
    assert plan[:3] == [True, True, True]
    assert sum(s for s, d in zip(sizes, plan, strict=True) if d) <= budget
    # the small collision-digit level still fits after the wide byte levels were refused
    assert plan[-1] == (sizes[-1] <= budget - sum(sizes[:3]))
    catalog, trie = small_content_trie()
    _, _, layout = build_seq2seq(TINY, catalog.level_sizes, scheme="bytes")
    # both paths give the same masks on every prefix of every item
    proc_dense = SIDConstraintProcessor(trie, layout, 1, 0, dense_limit=budget)
    proc_csr = SIDConstraintProcessor(trie, layout, 1, 0, dense_limit=0)
    for lv in range(trie.depth + 1):
        ids = torch.tensor(
            np.column_stack(
                [
                    np.zeros(len(catalog), dtype=np.int64),
                    layout.codes_to_token_ids(catalog.sid_codes)[:, :lv],
                ]
            )
        )
        vocab = layout.end_id
        assert torch.equal(proc_dense.allowed_mask(ids, vocab), proc_csr.allowed_mask(ids, vocab))


def test_tiny_model_learns_prompts_to_content_ids():
    catalog, trie = small_content_trie(max_bytes=16)
    torch.manual_seed(0)
    config = ModelConfig(
        d_model=64, num_layers=1, num_decoder_layers=1, num_heads=4, d_ff=128, dropout=0.0
    )
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes, scheme="bytes")
    prompts = ["party 70s", "angry rap", "japanese summer", "russian choir"]
    targets = [0, 2, 3, 4]
    enc = tokenizer(prompts, padding=True, return_tensors="pt")
    token_ids = layout.codes_to_token_ids(catalog.sid_codes[targets])
    labels = torch.tensor(np.column_stack([token_ids, np.full(4, tokenizer.eos_token_id)]))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        loss = model(**enc, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    items, _ = constrained_generate(
        model, enc["input_ids"], enc["attention_mask"], trie, layout, k=3
    )
    assert items[:, 0].tolist() == targets


# ------------------------------------------------------------------------------ artifacts


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    from tests.tiny_artifact import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("content"))


def test_benchmark_content_variant_builds_trains_and_serves(tiny_artifact, tmp_path):
    from eval.benchmark import _variant_artifact, ablation_schemes, id_token_figures
    from text2tracks.artifacts import component_writer, read_json
    from text2tracks.metadata import read_track_metadata
    from text2tracks.pipeline import Text2Tracks

    art = _variant_artifact(
        tiny_artifact, tmp_path / "artifact-content", "content", seed=0, content_max_bytes=24
    )
    catalog = SemanticIDCatalog.load(art / "semantic_ids" / "catalog")
    base = SemanticIDCatalog.load(tiny_artifact / "semantic_ids" / "catalog")
    assert catalog.scheme == "bytes" and catalog.item_ids == base.item_ids
    assert catalog.level_sizes[:-1] == (BYTE_LEVEL_SIZE,) * 24
    metadata = read_track_metadata(art / "semantic_ids")
    for i in (0, 7, len(catalog) - 1):
        name, artist = metadata[catalog.item_ids[i]]
        assert (
            decode_text(catalog.sid_codes[i])
            == truncate_utf8(content_text(name, artist), 24).decode()
        )
    entry = read_json(art / "text2tracks.json", "manifest")["components"]["semantic_ids"]
    assert entry["scheme"] == "content" and entry["depth"] == 25
    assert entry["content_stats"]["tracks"] == len(catalog)
    assert "seq2seq" not in read_json(art / "text2tracks.json", "manifest")["components"]
    figures = id_token_figures(art)
    assert figures["decoding_steps_per_item"] == 26 and figures["token_scheme"] == "bytes"
    assert figures["mean_id_tokens"] == pytest.approx(entry["content_stats"]["mean_id_tokens"])
    assert id_token_figures(tiny_artifact)["mean_id_tokens"] == base.depth + 1
    assert ablation_schemes("content, semantic") == ("content", "semantic")
    with pytest.raises(ValueError, match="unknown"):
        ablation_schemes("semantic,title")

    # an (untrained) content-ID model in the artifact: the public API loads and serves it
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(TINY, catalog.level_sizes, scheme=catalog.scheme)
    with component_writer(art, "seq2seq", {"steps": 0}) as tmp:
        save_seq2seq(model, tokenizer, layout, tmp, TINY)
    recommender = Text2Tracks.from_pretrained(art, device="cpu")
    assert recommender.layout.scheme == "bytes"
    recs = recommender.recommend(["sad songs", "Лето 🔥"], k=5, exclude=[[base.item_ids[0]], []])
    for row in recs:
        ids = [r.track_id for r in row]
        assert len(set(ids)) == 5 and all(t in set(catalog.item_ids) for t in ids)
        assert all(r.name == metadata[r.track_id][0] for r in row)
    assert base.item_ids[0] not in [r.track_id for r in recs[0]]


def test_train_seq2seq_runs_on_a_content_artifact(tiny_artifact, tmp_path):
    from eval.benchmark import _variant_artifact
    from tests.tiny_artifact import TINY_MODEL_FLAGS
    from training.train_seq2seq import build_parser, config_from_args, train

    art = _variant_artifact(
        tiny_artifact, tmp_path / "artifact-content", "content", seed=0, content_max_bytes=16
    )
    playlists = tiny_artifact.parent / "demo.jsonl"
    args = build_parser().parse_args(
        [
            "--artifact",
            str(art),
            "--playlists",
            str(playlists),
            "--max-steps",
            "2",
            "--eval-every",
            "0",
            "--eval-prompts",
            "4",
            "--batch-size",
            "8",
            *TINY_MODEL_FLAGS,
            "--num-threads",
            "1",
            "--no-progress",
            "--warmup-steps",
            "1",
        ]
    )
    summary = train(config_from_args(args))
    assert summary["steps"] == 2 and "val_hits@10" in summary["final_eval"]
    _, _, layout = load_seq2seq(art / "seq2seq")
    assert layout.scheme == "bytes" and layout.depth == 17
