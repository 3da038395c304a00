"""The seed-factor prior on the decoder's ID-token scores (``--seed-prior``,
:mod:`text2tracks.seed_prior`): the least-squares token vectors, the exact bias each prompt's
rows get in training and in search, the steer it gives the answers, the checks, and the round
trip through an artifact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.seed_embedding import attach_seed_items
from text2tracks.seed_factors import SEED_FACTORS_NAME, install_seed_factors
from text2tracks.seed_prior import fit_token_factors, install_seed_prior, seed_prior_of


def test_token_vectors_sum_to_each_items_factors_when_they_are_additive():
    rng = np.random.default_rng(0)
    level0, level1 = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    codes = np.array([[a, b] for a in range(3) for b in range(5)])
    factors = level0[codes[:, 0]] + level1[codes[:, 1]]
    columns = np.stack([codes[:, 0], 3 + codes[:, 1]], axis=1)
    g = fit_token_factors(columns, factors, n_columns=9)  # column 8: used by no item
    assert g.shape == (9, 4) and g.dtype == np.float32
    np.testing.assert_allclose(g[columns].sum(axis=1), factors, atol=0.02)
    np.testing.assert_array_equal(g[8], 0.0)
    with pytest.raises(ValueError, match=r"lie in \[0, 7\)"):
        fit_token_factors(columns, factors, n_columns=7)
    with pytest.raises(ValueError, match="rows of factors"):
        fit_token_factors(columns, factors[:4], n_columns=9)


def _catalog() -> SemanticIDCatalog:
    codes = np.array([[g, i, 0] for g in range(2) for i in range(3)], np.int64)
    return SemanticIDCatalog([f"g{g}:t{i}" for g in range(2) for i in range(3)], codes, (2, 3, 1))


# group 0's tracks point one way in CF space, group 1's the other
_FACTORS = np.array([[2.0, 0.1], [2.1, -0.2], [1.9, 0.3], [-2.0, 0.2], [-2.1, -0.1], [-1.9, 0.0]])


def _plain_model(seed: int):
    """A tiny T5 over :func:`_catalog` that reads no seeds: model, tokenizer, layout, catalogue,
    config."""
    from text2tracks.modeling import ModelConfig, build_seq2seq

    torch.manual_seed(seed)
    config = ModelConfig(
        encoder="t5", d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,
        max_prompt_length=16, tokenizer="bytes",
    )  # fmt: skip
    catalog = _catalog()
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
    return model, tokenizer, layout, catalog, config


def _seeded_model(seed: int = 0, encoding: str = "item"):
    model, tokenizer, layout, catalog, config = _plain_model(seed)
    table = attach_seed_items(model, layout.codes_to_token_ids(catalog.sid_codes), encoding)
    install_seed_factors(model, _FACTORS)
    return model, tokenizer, layout, catalog, config, table


def _seeded_and_plain_prompt(model, table, title_only_length: int):
    """Two prompts (a title with seeds 0 and 4; a title-only one of ``title_only_length``
    tokens), target labels, and the model's compact logits for them (eval mode, no grad)."""
    from text2tracks.output_head import compact_output

    model.eval()
    ids = torch.tensor([[5, 6, table[0, 0], table[4, 0]], [7, 8, 0, 0]])
    ids[1, title_only_length:] = 0
    mask = (torch.arange(4) < torch.tensor([[4], [title_only_length]])).long()
    labels = torch.tensor([[3, 4], [3, 4]])
    with torch.no_grad(), compact_output(model):
        plain = model(input_ids=ids, attention_mask=mask, decoder_input_ids=labels).logits
    return ids, mask, labels, plain


def test_each_prompt_gets_its_seeds_mean_factor_score_in_training_and_in_search_rows():
    from text2tracks.output_head import compact_output

    model, _, _, _, _, table = _seeded_model()
    ids, mask, labels, plain = _seeded_and_plain_prompt(model, table, title_only_length=1)
    weight = torch.tensor([[1.5, -0.5], [0.25, 2.0]])
    prior = install_seed_prior(model, weight)
    with torch.no_grad(), compact_output(model):
        biased = model(input_ids=ids, attention_mask=mask, decoder_input_ids=labels).logits
        f = model.get_encoder().get_input_embeddings().factors
        m = (f[0] + f[4]) / 2
        expected = (m @ weight) @ prior.token_factors.T
        torch.testing.assert_close(biased[0], plain[0] + expected)
        torch.testing.assert_close(biased[1], plain[1])  # no seeds, no prior
        # search rows: prompt-major, as many per prompt (3 beams each)
        states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        head = model.get_output_embeddings()
        hidden = torch.randn(6, 32)
        rows = head(hidden)
        prior.context = None
        bare = head(hidden)
    assert states.shape[0] == 2
    torch.testing.assert_close(rows[:3], bare[:3] + expected)
    torch.testing.assert_close(rows[3:], bare[3:])
    prior.context = torch.zeros(4, 2)
    with pytest.raises(RuntimeError, match="prompt-major"):
        head(torch.randn(6, 32))


def _recommender(model, tokenizer, layout, catalog, config):
    from text2tracks import Text2Tracks

    return Text2Tracks(
        model, tokenizer, layout, catalog, max_seed_tracks=10, num_beams=6,
        model_config=config.to_dict(),
    )  # fmt: skip


@pytest.mark.parametrize("encoding,nodes", [("item", False), ("direct", False), ("item", True)])
def test_the_prior_steers_answers_toward_the_seeds_cf_neighbourhood(encoding, nodes):
    model, tokenizer, layout, catalog, config, _ = _seeded_model(1, encoding)
    rec = _recommender(model, tokenizer, layout, catalog, config)
    ask = dict(k=2, diversity=0, num_beams=6)
    mode = {"layout": layout} if nodes else {}
    install_seed_prior(model, **mode)  # W = 0: the same answers as without a prior
    zero = rec.recommend_arrays(["mix", "mix"], seed_tracks=[["g0:t0"], ["g1:t0"]], **ask)
    seed_prior_of(model).context = None
    model.get_output_embeddings().seed_prior = None
    bare = rec.recommend_arrays(["mix", "mix"], seed_tracks=[["g0:t0"], ["g1:t0"]], **ask)
    np.testing.assert_array_equal(zero[0], bare[0])
    install_seed_prior(model, torch.eye(2) * 30, **mode)
    items, _ = rec.recommend_arrays(["mix", "mix"], seed_tracks=[["g0:t0"], ["g1:t0"]], **ask)
    assert {t.split(":")[0] for t in items[0]} == {"g0"}  # group 0's other tracks
    assert {t.split(":")[0] for t in items[1]} == {"g1"}
    assert "g0:t0" not in items[0] and "g1:t0" not in items[1]  # seeds never come back


def test_the_prior_needs_seed_factors_and_an_id_only_output_layer():
    from text2tracks.modeling import ModelConfig
    from training.train_seq2seq import TrainConfig

    model, *_ = _seeded_model()
    model.get_encoder().get_input_embeddings().factor_proj = None
    with pytest.raises(ValueError, match="seed prior reads CF factors"):
        install_seed_prior(model)
    t5 = ModelConfig(encoder="t5")
    with pytest.raises(ValueError, match="--seed-prior off"):
        TrainConfig(artifact="a", playlists="p", model=t5, seed_prior="tokens")
    with pytest.raises(ValueError, match="--seed-prior off"):
        TrainConfig(
            artifact="a", playlists="p", model=t5, seed_prob=0.5, seed_factors=False,
            seed_prior="nodes",
        )  # fmt: skip
    # the default: the nodes prior wherever the seeds read factors
    assert TrainConfig(artifact="a", playlists="p", model=t5, seed_prob=0.5).seed_prior == "nodes"
    assert TrainConfig(artifact="a", playlists="p", model=t5).seed_prior == "off"
    no_factors = dict(seed_prob=0.5, seed_factors=False)
    assert TrainConfig(artifact="a", playlists="p", model=t5, **no_factors).seed_prior == "off"
    full = ModelConfig(encoder="t5", id_only_output=False)
    assert TrainConfig(artifact="a", playlists="p", model=full, seed_prob=0.5).seed_prior == "off"
    with pytest.raises(ValueError, match="seed_prior must be 'auto' or one of"):
        TrainConfig(artifact="a", playlists="p", model=t5, seed_prob=0.5, seed_prior="on")


@pytest.mark.parametrize("nodes", [False, True])
def test_the_prior_saves_beside_the_model_and_loads_with_the_same_answers(tmp_path, nodes):
    from safetensors import safe_open

    from text2tracks import Text2Tracks

    model, tokenizer, layout, catalog, config, _ = _seeded_model(2)
    install_seed_factors(model, _FACTORS, torch.randn(32, 2))
    install_seed_prior(model, torch.randn(2, 2) * 3, layout=layout if nodes else None)
    rec = _recommender(model, tokenizer, layout, catalog, config)
    ask = dict(k=4, seed_tracks=["g0:t0", "g1:t2"], diversity=0, num_beams=6)
    before = rec.recommend_arrays(["mix"], **ask)
    rec.save_pretrained(tmp_path / "art")
    seq2seq = tmp_path / "art" / "seq2seq"
    with safe_open(str(seq2seq / SEED_FACTORS_NAME), "pt") as f:
        kind = "prior_nodes" if nodes else "prior_token_factors"
        assert {"weight", "prior_weight", kind} <= set(f.keys())
    with safe_open(str(seq2seq / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "seed_prior" in k]
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    torch.testing.assert_close(seed_prior_of(loaded.model).weight, seed_prior_of(model).weight)
    assert (seed_prior_of(loaded.model).nodes is not None) == nodes
    after = loaded.recommend_arrays(["mix"], **ask)
    assert np.array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5, atol=1e-5)


def test_grouped_training_forward_gives_each_target_its_own_prompts_prior():
    """Several targets share one encoded prompt in any order (``grouped_forward``): the loss
    equals that of the model run on each target's prompt repeated, prior included, with and
    without the list loss's extra rows."""
    from text2tracks.code_search import model_eos_token_id
    from text2tracks.training_step import grouped_forward

    model, _, layout, catalog, _, table = _seeded_model(3)
    install_seed_prior(model, torch.randn(2, 2) * 2)
    model.eval()
    ids = torch.tensor([[5, 6, table[0, 0], table[4, 0]], [7, 8, table[2, 0], 0], [9, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]])
    prompt_index = torch.tensor([2, 0, 1, 0, 1])
    tokens = layout.codes_to_token_ids(catalog.sid_codes[[1, 3, 5, 2, 0]])
    eos = np.full((5, 1), model_eos_token_id(model))
    labels = torch.as_tensor(np.concatenate([tokens, eos], axis=1), dtype=torch.long)
    with torch.no_grad():
        grouped = grouped_forward(model, ids, mask, prompt_index, labels).loss
        repeated = model(
            input_ids=ids[prompt_index], attention_mask=mask[prompt_index], labels=labels
        ).loss
        listed = grouped_forward(
            model, ids, mask, prompt_index, labels, list_loss_weight=0.5, num_negatives=2,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        prior = seed_prior_of(model)
        prior.weight.zero_()
        plain = grouped_forward(model, ids, mask, prompt_index, labels).loss
    torch.testing.assert_close(grouped, repeated)
    torch.testing.assert_close(listed.ce_loss, grouped)
    assert abs(float(plain) - float(grouped)) > 1e-4  # the prior changed the loss


def _whole_id_priors(model, prior, layout, catalog, ids):
    """Each catalogue item's prior summed over its ID's search steps, for prompt ``ids``."""
    from text2tracks.output_head import compact_output
    from text2tracks.seed_prior import prior_prefix

    head = model.get_output_embeddings()
    codes = torch.as_tensor(np.array(catalog.sid_codes))
    total = torch.zeros(len(catalog))
    with torch.no_grad():
        model.get_encoder()(input_ids=ids)
        for t in range(codes.shape[1]):
            with compact_output(model), prior_prefix(model, codes[:, :t]):
                extra = prior.bias((len(catalog), head.token_ids.numel()))
            column = head.position[codes[:, t] + layout.offsets[t]]
            total += extra.gather(1, column[:, None])[:, 0]
    return total


def test_the_nodes_prior_of_a_whole_id_is_the_items_own_factor_score_in_search_and_training():
    """Summed over an ID's steps the ``"nodes"`` prior is ``m^T W f_i`` exactly, and search
    (step by step, from the prefix) and training (teacher-forced targets) score every ID the
    same."""
    from text2tracks.code_search import EnsembleMember, ensemble_item_scores, model_eos_token_id
    from text2tracks.seed_prior import prior_rows

    model, _, layout, catalog, _, table = _seeded_model(4)
    weight = torch.tensor([[1.0, 0.5], [-0.5, 2.0]])
    prior = install_seed_prior(model, weight, layout=layout)
    model.eval()
    ids = torch.tensor([[5, 6, table[1, 0], table[5, 0]]])
    f = model.get_encoder().get_input_embeddings().factors
    total = _whole_id_priors(model, prior, layout, catalog, ids)
    torch.testing.assert_close(total, f @ ((f[1] + f[5]) / 2 @ weight))
    with torch.no_grad():
        # search's step-by-step scores equal the teacher-forced sequence scores
        n = len(catalog)
        member = EnsembleMember(model, ids, None, layout, model_eos_token_id(model))
        searched = ensemble_item_scores([member], catalog.sid_codes[None])[0]
        eos = np.full((n, 1), model_eos_token_id(model))
        labels = np.concatenate([layout.codes_to_token_ids(catalog.sid_codes), eos], axis=1)
        labels = torch.as_tensor(labels, dtype=torch.long)
        with prior_rows(model, torch.zeros(n, dtype=torch.long), labels):
            logits = model(input_ids=ids.expand(n, -1), labels=labels).logits
        forced = logits.float().log_softmax(-1).gather(-1, labels[..., None])[..., 0].sum(1)
    np.testing.assert_allclose(searched, forced.double().numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("encoding", ["item", "direct"])
def test_the_prompt_context_adds_the_projected_mean_encoder_state_for_every_prompt(
    tmp_path, encoding
):
    """``--seed-prior-prompt``: context = mean seed factors (0 without seeds) + P h_mean over the
    whole prompt's states (``direct`` seeds: widened back by DirectSeeds), so a title-only
    prompt gets a prior too; saved and loaded with the same answers."""
    from safetensors import safe_open

    from text2tracks import Text2Tracks
    from text2tracks.output_head import compact_output
    from training.train_seq2seq import TrainConfig

    model, tokenizer, layout, catalog, config, table = _seeded_model(3, encoding)
    ids, mask, labels, plain = _seeded_and_plain_prompt(model, table, title_only_length=2)
    weight = torch.tensor([[1.5, -0.5], [0.25, 2.0]])
    prior = install_seed_prior(model, weight, prompt=True)
    assert prior.prompt_weight.shape == (2, 32) and prior.prompt_weight.requires_grad
    with torch.no_grad(), compact_output(model):
        biased = model(input_ids=ids, attention_mask=mask, decoder_input_ids=labels).logits
        states = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
    f = model.get_encoder().get_input_embeddings().factors
    pooled = torch.stack([states[0].mean(0), states[1, :2].mean(0)])  # padding left out
    context = pooled @ prior.prompt_weight.detach().T + torch.stack([(f[0] + f[4]) / 2, 0 * f[0]])
    expected = (context @ weight) @ prior.token_factors.T
    torch.testing.assert_close(biased, plain + expected[:, None, :])
    assert expected[1].abs().sum() > 0  # the title-only prompt gets a prior

    rec = _recommender(model, tokenizer, layout, catalog, config)
    with torch.no_grad():
        prior.prompt_weight.mul_(0).add_(torch.randn(2, 32) * 3)
    ask = dict(k=4, diversity=0, num_beams=6)
    before = rec.recommend_arrays(["mix", "other"], **ask)
    rec.save_pretrained(tmp_path / "art")
    with safe_open(str(tmp_path / "art" / "seq2seq" / SEED_FACTORS_NAME), "pt") as fh:
        assert "prior_prompt_weight" in fh.keys()
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    torch.testing.assert_close(seed_prior_of(loaded.model).prompt_weight, prior.prompt_weight)
    after = loaded.recommend_arrays(["mix", "other"], **ask)
    assert np.array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="--seed-prior-prompt"):
        TrainConfig(artifact="a", playlists="p", seed_prior="off", seed_prior_prompt=True)


def test_a_model_that_reads_no_seeds_gets_a_prompt_only_prior_over_the_catalogues_factors(
    tmp_path,
):
    """``--seed-prior-prompt`` without seeds: the context is ``P h_mean`` alone, the nodes over
    the catalogue's standardised factors; the prior saves (factors too, where the artifact has
    no ``cf/``) and loads with the same answers; asked for in the config, it is the nodes prior."""
    from text2tracks import Text2Tracks
    from text2tracks.modeling import ModelConfig
    from text2tracks.seed_embedding import standardise_factors
    from text2tracks.seed_factors import SEED_ITEM_FACTORS_NAME
    from training.train_seq2seq import TrainConfig

    model, tokenizer, layout, catalog, config = _plain_model(4)
    tokens = layout.codes_to_token_ids(catalog.sid_codes)
    with pytest.raises(ValueError, match="pass prompt=True"):
        install_seed_prior(model, layout=layout, factors=_FACTORS * 5, item_tokens=tokens)
    with pytest.raises(ValueError, match="seed prior reads CF factors"):
        install_seed_prior(model, layout=layout, prompt=True)
    prior = install_seed_prior(
        model, torch.eye(2) * 3, layout=layout, prompt=True, factors=_FACTORS * 5 + 1,
        item_tokens=tokens,
    )  # fmt: skip
    np.testing.assert_allclose(prior.item_factors.numpy(), standardise_factors(_FACTORS), atol=1e-5)
    with torch.no_grad():
        prior.prompt_weight.copy_(torch.randn(2, 32) * 3)
    rec = _recommender(model, tokenizer, layout, catalog, config)
    ask = dict(k=4, diversity=0, num_beams=6)
    before = rec.recommend_arrays(["mix", "other"], **ask)
    # the whole ID's prior is m^T W f_i with m = P h_mean: the beam's scores move by it
    prior_scores = rec.recommend_arrays(["mix", "other"], **ask)[1]
    model.get_output_embeddings().seed_prior = None
    bare = rec.recommend_arrays(["mix", "other"], **ask)
    model.get_output_embeddings().seed_prior = prior
    assert not np.allclose(bare[1], prior_scores)
    rec.save_pretrained(tmp_path / "art")
    assert (tmp_path / "art" / "seq2seq" / SEED_ITEM_FACTORS_NAME).is_file()  # no cf/ here
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    again = seed_prior_of(loaded.model)
    assert again is not None and again.nodes is not None
    torch.testing.assert_close(again.prompt_weight, prior.prompt_weight)
    after = loaded.recommend_arrays(["mix", "other"], **ask)
    assert np.array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5, atol=1e-5)
    t5 = ModelConfig(encoder="t5")
    assert TrainConfig(
        artifact="a", playlists="p", model=t5, seed_prior_prompt=True
    ).seed_prior == ("nodes")


def test_training_a_title_only_model_with_the_prompt_prior_reads_cf_and_loads_back(tmp_path):
    """``--seed-prior-prompt`` on a model that reads no seeds, through the trainer: the prior
    trains (``W`` from zero), is saved beside the model and comes back from ``cf/``."""
    from tiny_artifact import train_tiny_on_demo

    from text2tracks import Text2Tracks

    _, art = train_tiny_on_demo(tmp_path, "--members", "1", "--seed-prior-prompt")
    assert (art / "seq2seq" / SEED_FACTORS_NAME).is_file()
    rec = Text2Tracks.from_pretrained(art, device="cpu")
    prior = seed_prior_of(rec.model)
    assert prior.nodes is not None and float(prior.weight.detach().abs().sum()) > 0
    assert prior.prompt_weight.shape == (8, 32)
    assert len(rec.recommend("road trip", k=3)) == 3


def test_transformers_generate_refuses_a_model_whose_nodes_prior_reads_the_prefix():
    from text2tracks.decoding import constrained_generate
    from text2tracks.trie import FlatTrie

    model, _, layout, catalog, _, _ = _seeded_model(5)
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    ids = torch.tensor([[5, 6, 7]])
    found, _ = constrained_generate(model, ids, None, trie, layout, k=2)  # no prior: decodes
    assert found.shape == (1, 2)
    install_seed_prior(model, layout=layout)
    with pytest.raises(ValueError, match="ensemble_generate"):
        constrained_generate(model, ids, None, trie, layout, k=2)


def test_the_count_scale_weighs_each_prompts_seed_mean_by_its_seed_count_bucket(tmp_path):
    """``--seed-prior-count-scale``: context = mean seed factors x exp(s[floor(log2 n)]); it
    starts at 1 (the prior as without it), trains, saves and loads; a prompt-only prior and a
    config without seed factors refuse it."""
    from safetensors import safe_open

    from text2tracks import Text2Tracks
    from text2tracks.output_head import compact_output
    from text2tracks.seed_prior import COUNT_BUCKETS
    from training.train_seq2seq import TrainConfig

    model, tokenizer, layout, catalog, config, table = _seeded_model(4)
    model.eval()
    ids = torch.tensor([[5, 6, table[0, 0], table[4, 0]], [7, table[1, 0], 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = torch.tensor([[3, 4], [3, 4]])
    weight = torch.tensor([[1.5, -0.5], [0.25, 2.0]])
    prior = install_seed_prior(model, weight, count_scale=True)
    assert prior.count_log_scale.shape == (COUNT_BUCKETS,) and prior.count_log_scale.requires_grad
    with torch.no_grad(), compact_output(model):
        start = model(input_ids=ids, attention_mask=mask, decoder_input_ids=labels).logits
        prior.count_log_scale.copy_(torch.log(torch.tensor([3.0, 0.5, 1, 1, 1, 1, 1, 1])))
        scaled = model(input_ids=ids, attention_mask=mask, decoder_input_ids=labels).logits
    f = model.get_encoder().get_input_embeddings().factors
    means = torch.stack([(f[0] + f[4]) / 2, f[1]])  # two seeds (bucket 1), one seed (bucket 0)
    extra = (means @ weight) @ prior.token_factors.T
    plain = start - extra[:, None, :]  # at the start the scale is 1: the plain prior
    torch.testing.assert_close(scaled, plain + (torch.tensor([[0.5], [3.0]]) * extra)[:, None])

    model.train()
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    grad = prior.count_log_scale.grad
    assert grad[:2].abs().min() > 0 and not grad[2:].any()  # only the buckets the prompts use

    rec = _recommender(model, tokenizer, layout, catalog, config)
    ask = dict(k=4, seed_tracks=["g0:t0", "g1:t2"], diversity=0, num_beams=6)
    before = rec.recommend_arrays(["mix"], **ask)
    rec.save_pretrained(tmp_path / "art")
    with safe_open(str(tmp_path / "art" / "seq2seq" / SEED_FACTORS_NAME), "pt") as fh:
        assert "prior_count_log_scale" in fh.keys()
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    loaded_scale = seed_prior_of(loaded.model).count_log_scale
    torch.testing.assert_close(loaded_scale, prior.count_log_scale)
    after = loaded.recommend_arrays(["mix"], **ask)
    assert np.array_equal(after[0], before[0])

    plain_model, *_ = _plain_model(5)
    with pytest.raises(ValueError, match="count scale"):
        install_seed_prior(
            plain_model, prompt=True, factors=_FACTORS, item_tokens=catalog.sid_codes,
            count_scale=True,
        )  # fmt: skip
    with pytest.raises(ValueError, match="--seed-prior-count-scale"):
        TrainConfig(artifact="a", playlists="p", seed_prior_count_scale=True)


def test_learned_factors_move_the_seeds_and_the_ids_and_train_save_and_load(tmp_path):
    """``--seed-prior-learn-factors``: the prior reads ``f + delta`` for seeds and items alike
    (at zero the plain prior), its tables follow ``delta`` after training mode, gradients reach
    the seeds' and the targets' rows, and ``delta`` saves and loads; it needs the nodes prior
    over seeds that read factors."""
    from text2tracks import Text2Tracks
    from text2tracks.code_search import model_eos_token_id
    from text2tracks.seed_prior import prior_rows
    from training.train_seq2seq import TrainConfig

    model, tokenizer, layout, catalog, config, table = _seeded_model(4)
    weight = torch.tensor([[1.0, 0.5], [-0.5, 2.0]])
    prior = install_seed_prior(model, weight, layout=layout, learn_factors=True)
    assert prior.factor_delta.shape == (len(catalog), 2) and prior.factor_delta.requires_grad
    model.eval()
    f = model.get_encoder().get_input_embeddings().factors
    ids = torch.tensor([[5, 6, table[1, 0], table[5, 0]]])
    plain = _whole_id_priors(model, prior, layout, catalog, ids)
    torch.testing.assert_close(plain, f @ ((f[1] + f[5]) / 2 @ weight))
    delta = torch.tensor([[0.5, -1.0], [0, 0], [2, 1], [-1, 0.5], [0, 3], [1, 1]])
    model.train()  # the tables are recomputed after training mode
    with torch.no_grad():
        prior.factor_delta.copy_(delta)
    model.eval()
    g = f + delta
    moved = _whole_id_priors(model, prior, layout, catalog, ids)
    torch.testing.assert_close(moved, g @ ((g[1] + g[5]) / 2 @ weight))

    model.train()
    eos = model_eos_token_id(model)
    labels = np.concatenate([layout.codes_to_token_ids(catalog.sid_codes[[2]]), [[eos]]], 1)
    labels = torch.as_tensor(labels, dtype=torch.long)
    with prior_rows(model, torch.zeros(1, dtype=torch.long), labels):
        model(input_ids=ids, labels=labels).loss.backward()
    grad = prior.factor_delta.grad.abs().sum(1)
    assert grad[[1, 5, 2]].min() > 0  # the two seeds and the target

    model.eval()
    rec = _recommender(model, tokenizer, layout, catalog, config)
    ask = dict(k=4, seed_tracks=["g0:t1", "g1:t2"], diversity=0, num_beams=6)
    before = rec.recommend_arrays(["mix"], **ask)
    rec.save_pretrained(tmp_path / "art")
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    torch.testing.assert_close(seed_prior_of(loaded.model).factor_delta, prior.factor_delta)
    after = loaded.recommend_arrays(["mix"], **ask)
    assert np.array_equal(after[0], before[0]) and np.allclose(after[1], before[1], atol=1e-5)

    with pytest.raises(ValueError, match="--seed-prior-learn-factors"):
        install_seed_prior(_seeded_model(5)[0], learn_factors=True)  # the tokens prior
    with pytest.raises(ValueError, match="--seed-prior-learn-factors"):
        TrainConfig(artifact="a", playlists="p", seed_prior_learn_factors=True)
