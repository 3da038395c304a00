import numpy as np
import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

from text2tracks.decoding import (
    SIDConstraintProcessor,
    constrained_generate,
    prefix_allowed_tokens_fn_from_trie,
)
from text2tracks.tokens import SIDTokenLayout
from text2tracks.trie import FlatTrie

# vocabulary of 10: 0 pad / decoder start, 1 EOS, SID blocks [2, 4) [4, 7) [7, 9), 9 a plain token
CODES = np.array(
    [
        [0, 0, 0],  # item 0
        [0, 0, 1],  # item 1
        [0, 2, 0],  # item 2
        [1, 1, 0],  # item 3
        [1, 1, 1],  # item 4
        [1, 2, 1],  # item 5
    ]
)
SIZES = (2, 3, 2)
LAYOUT = SIDTokenLayout(SIZES, (2, 4, 7))
VOCAB = 10
EOS, PAD = 1, 0


@pytest.fixture()
def trie():
    return FlatTrie.from_codes(CODES, SIZES)


# both ways of building a level's mask: dense child table, and CSR gather + scatter
PATHS = pytest.mark.parametrize("dense_limit", [1 << 26, 0], ids=["dense", "csr"])


def allowed(proc, rows):
    """Allowed next tokens of each row; rows of equal length go through in one call."""
    ids = torch.tensor(rows, dtype=torch.long)
    mask = proc.allowed_mask(ids, VOCAB)
    return [sorted(torch.nonzero(m).flatten().tolist()) for m in mask]


def allowed_each(proc, rows):
    return [allowed(proc, [row])[0] for row in rows]


@PATHS
def test_exact_masks_each_step(trie, dense_limit):
    proc = SIDConstraintProcessor(trie, LAYOUT, EOS, PAD, dense_limit=dense_limit)
    assert allowed(proc, [[0]]) == [[2, 3]]  # step 0: level-0 codes {0, 1}
    assert allowed(proc, [[0, 2], [0, 3]]) == [[4, 6], [5, 6]]
    assert allowed(proc, [[0, 2, 4], [0, 2, 6], [0, 3, 5], [0, 3, 6]]) == [[7, 8], [7], [7, 8], [8]]
    assert allowed(proc, [[0, 2, 4, 7], [0, 3, 6, 8]]) == [[EOS], [EOS]]  # after depth: EOS only
    assert allowed(proc, [[0, 2, 4, 7, 1]]) == [[PAD]] == allowed(proc, [[0, 2, 4, 7, 1, 0]])
    # prefixes outside the trie, or tokens of the wrong level, allow nothing
    assert allowed_each(proc, [[0, 2, 5], [0, 4], [0, 9], [0, 2, 5, 7], [0, 2, 4, 9]]) == [[]] * 5


@PATHS
def test_decoder_start_is_skipped_not_part_of_the_key(trie, dense_limit):
    proc = SIDConstraintProcessor(trie, LAYOUT, EOS, PAD, dense_limit=dense_limit)
    # whatever the start token, position 0 is ignored: same masks as with pad as start
    for start in (0, 1, 9, 2):
        assert allowed(proc, [[start]]) == [[2, 3]]
        assert allowed(proc, [[start, 3]]) == [[5, 6]]
        assert allowed(proc, [[start, 3, 5, 8]]) == [[EOS]]
    # with no decoder prompt, the first position is level 0
    proc0 = SIDConstraintProcessor(
        trie, LAYOUT, EOS, PAD, decoder_prompt_len=0, dense_limit=dense_limit
    )
    assert allowed(proc0, [[3]]) == [[5, 6]]


@PATHS
def test_exclusions_prune_leaves_and_whole_subtrees(trie, dense_limit):
    exclude = [[2], [0, 1], [3, 4, 5], [0]]
    proc = SIDConstraintProcessor(
        trie, LAYOUT, EOS, PAD, exclude=exclude, num_beams=2, dense_limit=dense_limit
    )
    # rows map to prompts by row // num_beams
    step0 = allowed(proc, [[0]] * 8)
    assert step0 == [[2, 3]] * 4 + [[2]] * 2 + [[2, 3]] * 2  # prompt 2: subtree of code 1 gone
    step1 = allowed(proc, [[0, 2]] * 8)
    # prompt 0: (0, 2) held only item 2 -> pruned; prompt 1: (0, 0) fully excluded
    assert step1 == [[4]] * 2 + [[6]] * 2 + [[4, 6]] * 4
    step2 = allowed(proc, [[0, 2, 4]] * 8)
    assert step2 == [[7, 8]] * 2 + [[]] * 2 + [[7, 8]] * 2 + [[8]] * 2  # prompt 3: leaf 0 gone
    step3 = allowed(proc, [[0, 2, 4, 7], [0, 2, 4, 8]] * 4)
    assert step3 == [[EOS]] * 2 + [[]] * 2 + [[EOS]] * 2 + [[], [EOS]]
    with pytest.raises(ValueError, match="rows"):
        proc(torch.zeros(3, 1, dtype=torch.long), torch.zeros(3, VOCAB))


@PATHS
def test_does_not_modify_input_scores(trie, dense_limit):
    proc = SIDConstraintProcessor(
        trie, LAYOUT, EOS, PAD, exclude=[[1]], num_beams=2, dense_limit=dense_limit
    )
    scores = torch.randn(2, VOCAB)
    before = scores.clone()
    for ids in ([[0], [0]], [[0, 2], [0, 3]], [[0, 2, 4], [0, 2, 4]], [[0, 2, 4, 7]] * 2):
        out = proc(torch.tensor(ids), scores)
        assert out.data_ptr() != scores.data_ptr()
        assert torch.equal(scores, before)
        kept = torch.isfinite(out)
        assert torch.equal(out[kept], scores[kept])  # allowed tokens keep their exact values
        assert torch.isneginf(out[~kept]).all()


def test_constructor_and_call_errors(trie):
    with pytest.raises(ValueError, match="level sizes"):
        SIDConstraintProcessor(trie, SIDTokenLayout((2, 3, 3), (2, 4, 7)), EOS)
    with pytest.raises(ValueError, match="eos_token_id"):
        SIDConstraintProcessor(trie, LAYOUT, 5)
    with pytest.raises(ValueError, match="eos_token_id"):
        SIDConstraintProcessor(trie, LAYOUT, -1)
    with pytest.raises(ValueError, match="pad_token_id"):
        SIDConstraintProcessor(trie, LAYOUT, EOS, pad_token_id=2)
    with pytest.raises(ValueError, match="num_beams"):
        SIDConstraintProcessor(trie, LAYOUT, EOS, num_beams=0)
    with pytest.raises(ValueError, match="trie"):
        SIDConstraintProcessor(CODES, LAYOUT, EOS)
    with pytest.raises(ValueError, match="layout"):
        SIDConstraintProcessor(trie, {"level_sizes": SIZES}, EOS)
    with pytest.raises(ValueError, match=r"outside \[0, 6\)"):
        SIDConstraintProcessor(trie, LAYOUT, EOS, exclude=[[6]])
    with pytest.raises(ValueError, match="all 6 items"):
        SIDConstraintProcessor(trie, LAYOUT, EOS, exclude=[range(6)])
    with pytest.raises(ValueError, match="collection"):
        SIDConstraintProcessor(trie, LAYOUT, EOS, exclude=5)
    proc = SIDConstraintProcessor(trie, LAYOUT, EOS)
    with pytest.raises(ValueError, match="columns"):
        proc(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 8))
    with pytest.raises(ValueError, match="same rows"):
        proc(torch.zeros(2, 1, dtype=torch.long), torch.zeros(1, VOCAB))


# ---------------------------------------------------------------- with a tiny random T5


def tiny_t5(vocab=12, seed=0):
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab,
        d_model=32,
        num_layers=2,
        num_heads=2,
        d_ff=64,
        d_kv=16,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5ForConditionalGeneration(config).eval()


def random_catalogue(seed):
    rng = np.random.default_rng(seed)
    sizes = (3, 3, 2)  # blocks [2, 5) [5, 8) [8, 10) in a vocabulary of 12
    universe = np.array(np.meshgrid(*[np.arange(s) for s in sizes], indexing="ij")).reshape(3, -1).T
    n = int(rng.integers(8, len(universe) + 1))
    codes = universe[rng.choice(len(universe), size=n, replace=False)]
    return FlatTrie.from_codes(codes, sizes), SIDTokenLayout(sizes, (2, 5, 8)), codes


def prompts(seed, batch=4, length=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, 12, (batch, length), generator=g)


@pytest.mark.parametrize("seed", range(6))
def test_property_decoded_items_exist_distinct_and_respect_exclusions(seed):
    trie, layout, codes = random_catalogue(seed)
    model = tiny_t5(seed=seed)
    x = prompts(seed)
    k = min(5, trie.n_items)
    items, scores = constrained_generate(model, x, torch.ones_like(x), trie, layout, k=k)
    assert items.shape == (4, k) and items.dtype == np.int64 and scores.dtype == np.float32
    for r in range(4):
        assert len(set(items[r].tolist())) == k
        assert ((items[r] >= 0) & (items[r] < trie.n_items)).all()
        assert all(tuple(codes[i]) in trie for i in items[r])
        assert (np.diff(scores[r]) <= 1e-6).all()  # best first
    assert np.isfinite(scores).all() and (scores < 0).all()

    rng = np.random.default_rng(seed)
    exclude = [
        rng.choice(trie.n_items, size=trie.n_items - k, replace=False).tolist() for _ in range(4)
    ]
    exclude[0] = items[0].tolist()  # excluding the previous answer forces new ones
    items_x, scores_x = constrained_generate(model, x, None, trie, layout, k=k, exclude=exclude)
    for r in range(4):
        assert len(set(items_x[r].tolist())) == k
        assert not set(items_x[r].tolist()) & set(exclude[r])
    assert np.isfinite(scores_x).all()


@pytest.mark.parametrize("seed", range(4))
def test_processor_and_prefix_allowed_tokens_fn_agree(seed):
    trie, layout, _ = random_catalogue(seed + 10)
    model = tiny_t5(seed=seed)
    x = prompts(seed + 10, batch=3)
    k, beams = 4, 6
    items, scores = constrained_generate(model, x, None, trie, layout, k=k, num_beams=beams)
    fn = prefix_allowed_tokens_fn_from_trie(trie, layout, eos_token_id=1, pad_token_id=0)
    out = model.generate(
        input_ids=x,
        num_beams=beams,
        num_return_sequences=k,
        prefix_allowed_tokens_fn=fn,
        output_scores=True,
        return_dict_in_generate=True,
        length_penalty=0.0,
        do_sample=False,
        early_stopping=True,
        max_new_tokens=trie.depth + 1,
    )
    codes = out.sequences[:, 1 : 1 + trie.depth].numpy() - np.asarray(layout.offsets)
    base_items = trie.items_of(codes).reshape(3, k)
    assert np.array_equal(items, base_items)
    np.testing.assert_allclose(scores, out.sequences_scores.view(3, k).numpy(), rtol=1e-6)


def test_scores_are_summed_log_probabilities():
    trie, layout, codes = random_catalogue(3)
    model = tiny_t5(seed=3)
    x = prompts(3, batch=2)
    items, scores = constrained_generate(model, x, None, trie, layout, k=3)
    for r in range(2):
        for j in range(3):
            target = torch.tensor(
                layout.codes_to_token_ids(codes[items[r, j]][None, :]).tolist()[0] + [1]
            )[None, :]
            with torch.no_grad():
                logits = model(input_ids=x[r : r + 1], labels=target).logits
            logp = torch.log_softmax(logits, -1)[0].gather(1, target[0][:, None]).sum().item()
            assert scores[r, j] == pytest.approx(logp, abs=1e-4)


def test_whole_tiny_catalogue_and_too_large_k(trie):
    model = tiny_t5(vocab=VOCAB)
    x = prompts(0, batch=2)
    x = x.clamp(max=VOCAB - 1)
    items, _ = constrained_generate(model, x, None, trie, LAYOUT, k=6)
    assert sorted(items[0].tolist()) == list(range(6)) == sorted(items[1].tolist())
    with pytest.raises(ValueError, match="smaller k"):
        constrained_generate(model, x, None, trie, LAYOUT, k=7)
    with pytest.raises(ValueError, match="smaller k"):
        constrained_generate(model, x, None, trie, LAYOUT, k=4, exclude=[[0, 1, 2], []])
    items, _ = constrained_generate(model, x, None, trie, LAYOUT, k=3, exclude=[[0, 1, 2], [5]])
    assert sorted(items[0].tolist()) == [3, 4, 5] and 5 not in items[1]


def test_generate_argument_errors(trie):
    model = tiny_t5(vocab=VOCAB)
    x = prompts(0, batch=2).clamp(max=VOCAB - 1)
    with pytest.raises(ValueError, match="k must"):
        constrained_generate(model, x, None, trie, LAYOUT, k=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        constrained_generate(model, x, None, trie, LAYOUT, k=2, max_new_tokens=3)
    with pytest.raises(ValueError, match="one per prompt"):
        constrained_generate(model, x, None, trie, LAYOUT, k=2, exclude=[[0]])
    with pytest.raises(ValueError, match="attention_mask"):
        constrained_generate(model, x, torch.ones(2, 3), trie, LAYOUT, k=2)
    with pytest.raises(ValueError, match="num_return_sequences"):
        constrained_generate(model, x, None, trie, LAYOUT, k=2, num_return_sequences=2)
    with pytest.raises(ValueError, match="trie"):
        constrained_generate(model, x, None, CODES, LAYOUT, k=2)
    model.train()
    constrained_generate(model, x, None, trie, LAYOUT, k=2)
    assert model.training  # restored after decoding


def random_trie(rng, n_prompts: int):
    """A random small catalogue (1-3 levels of 1-4 codes, a random subset of the IDs), its trie
    and token layout (blocks from token 2), and a random exclusion list per prompt."""
    sizes = tuple(int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 4))))
    universe = np.array(list(np.ndindex(*sizes)))
    codes = universe[
        rng.choice(len(universe), size=int(rng.integers(1, len(universe) + 1)), replace=False)
    ]
    trie = FlatTrie.from_codes(codes, sizes)
    offsets = tuple(2 + sum(sizes[:lv]) for lv in range(len(sizes)))
    exclude = [
        rng.choice(trie.n_items, size=int(rng.integers(0, trie.n_items)), replace=False)
        for _ in range(n_prompts)
    ]
    return sizes, codes, trie, offsets, SIDTokenLayout(sizes, offsets), exclude


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dense_limit", [1 << 26, 0], ids=["dense", "csr"])
def test_masks_match_brute_force_on_random_tries(seed, dense_limit):
    rng = np.random.default_rng(seed)
    n_prompts, beams = 3, 2
    sizes, codes, trie, offsets, layout, exclude = random_trie(rng, n_prompts)
    vocab = layout.end_id + 1
    proc = SIDConstraintProcessor(
        trie, layout, EOS, PAD, exclude=exclude, num_beams=beams, dense_limit=dense_limit
    )
    ids = [tuple(c) for c in codes.tolist()]
    for t in range(len(sizes) + 1):
        prefixes = sorted(
            {i[:t] for i in ids}
            | {tuple(rng.integers(0, sizes[:t] + np.ones(t, int))) for _ in range(3)}
        )
        for p in prefixes:
            row = [0] + [offsets[lv] + c for lv, c in enumerate(p)]
            mask = proc.allowed_mask(torch.tensor([row] * (n_prompts * beams)), vocab)
            for r in range(n_prompts * beams):
                left = [i for j, i in enumerate(ids) if j not in set(exclude[r // beams].tolist())]
                if t < len(sizes):
                    expected = sorted({offsets[t] + i[t] for i in left if i[:t] == p})
                else:
                    expected = [EOS] if p in left else []
                assert torch.nonzero(mask[r]).flatten().tolist() == expected, (p, r)


def test_k_1_without_beams_returns_the_best_item_with_its_score():
    # One beam would make transformers run greedy search, which has no sequence scores.
    trie, layout, codes = random_catalogue(0)
    model = tiny_t5(seed=0)
    x = prompts(0)
    top1, score1 = constrained_generate(model, x, torch.ones_like(x), trie, layout, k=1)
    top2, score2 = constrained_generate(model, x, torch.ones_like(x), trie, layout, k=2)
    assert top1.shape == (4, 1) and np.isfinite(score1).all() and (score1 < 0).all()
    assert all(tuple(codes[i]) in trie for i in top1[:, 0])
    # k=1 runs the same two-beam search as k=2 and keeps its best answer.
    np.testing.assert_array_equal(top1[:, 0], top2[:, 0])
    np.testing.assert_allclose(score1[:, 0], score2[:, 0], atol=1e-5)


def test_generate_finds_prefix_nodes_from_the_previous_step(monkeypatch):
    """One walk from the root (step 0) per decode; later steps descend from the parent beam."""
    trie, layout, _ = random_catalogue(5)
    model = tiny_t5(seed=5)
    walked = []
    original = SIDConstraintProcessor._walk

    def walk(self, codes, prow, d):
        walked.append(codes.shape[1])
        return original(self, codes, prow, d)

    monkeypatch.setattr(SIDConstraintProcessor, "_walk", walk)
    x = prompts(5, batch=3)
    constrained_generate(model, x, None, trie, layout, k=4, exclude=[[0], [], [1, 2]])
    assert walked == [
        0
    ]  # (the masks themselves: test_processor_and_prefix_allowed_tokens_fn_agree)


@pytest.mark.parametrize("seed", range(6))
@PATHS
def test_next_code_mask_is_the_level_block_of_the_processor(seed, dense_limit):
    """The code-space search's mask (text2tracks.code_search) is what the processor writes into the
    next level's block of the vocabulary (or EOS), exclusions included, at every step."""
    rng = np.random.default_rng(100 + seed)
    n_prompts, beams = 2, 3
    sizes, _, trie, offsets, layout, exclude = random_trie(rng, n_prompts)
    vocab = layout.end_id + 1
    kwargs = dict(exclude=exclude, num_beams=beams, dense_limit=dense_limit)
    by_call = SIDConstraintProcessor(trie, layout, EOS, PAD, **kwargs)
    by_code = SIDConstraintProcessor(trie, layout, EOS, PAD, decoder_prompt_len=0, **kwargs)
    rows = n_prompts * beams
    prefix = torch.zeros((rows, 0), dtype=torch.long)
    for t in range(len(sizes) + 1):
        tokens = torch.cat(
            [torch.zeros((rows, 1), dtype=torch.long), prefix + torch.tensor(offsets[:t])], 1
        )
        full = by_call.allowed_mask(tokens, vocab)
        mask = by_code.next_code_mask(prefix)
        if t < len(sizes):
            assert torch.equal(mask, full[:, offsets[t] : offsets[t] + sizes[t]])
        else:
            assert torch.equal(mask, full[:, EOS : EOS + 1])
            break
        # extend each row by an allowed code where there is one (else any code)
        pick = torch.where(mask.any(1), mask.float().argmax(1), torch.zeros(rows, dtype=torch.long))
        prefix = torch.cat([prefix, pick[:, None]], 1)
    with pytest.raises(ValueError, match="levels"):
        by_code.next_code_mask(torch.zeros((rows, len(sizes) + 1), dtype=torch.long))
