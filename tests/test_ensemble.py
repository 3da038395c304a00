"""Ensembles: several seq2seq models decoded as one constrained beam search over their mean
log-probability (text2tracks.ensemble), trained side by side (train_seq2seq --members) and
loaded from an artifact's seq2seq_1/... components."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from tests.tiny_artifact import build_tiny_artifact, tiny_model_config


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("ensemble"))


def _models(artifact, seeds=(1, 2), d_model=32):
    """Untrained tiny T5s of the artifact's catalogue, one per seed (different weights)."""
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.modeling import build_seq2seq

    catalog = SemanticIDCatalog.load(artifact / "semantic_ids" / "catalog")
    config = tiny_model_config(d_model=d_model)
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
        model.eval()
        out.append((model, tokenizer, layout))
    return catalog, out


def _member(model, tokenizer, layout, texts):
    from text2tracks.ensemble import EnsembleMember

    enc = tokenizer(texts, padding=True, return_tensors="pt")
    eos = model.generation_config.eos_token_id
    return EnsembleMember(model, enc["input_ids"], enc["attention_mask"], layout, eos)


def _exact_scores(model, tokenizer, layout, catalog, text):
    """Every catalogue item's summed log-probability (its ID tokens and EOS), teacher-forced."""
    enc = tokenizer([text], return_tensors="pt")
    tokens = torch.as_tensor(layout.codes_to_token_ids(catalog.sid_codes))
    eos = model.generation_config.eos_token_id
    labels = torch.cat([tokens, torch.full((len(tokens), 1), eos)], dim=1)
    start = torch.full((len(tokens), 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        logits = model(
            input_ids=enc["input_ids"].expand(len(tokens), -1),
            attention_mask=enc["attention_mask"].expand(len(tokens), -1),
            decoder_input_ids=torch.cat([start, labels[:, :-1]], dim=1),
        ).logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(2, labels[:, :, None]).squeeze(2).sum(1).numpy()


def test_one_member_returns_what_constrained_generate_returns(tiny):
    from text2tracks.decoding import constrained_generate
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.trie import FlatTrie

    catalog, [(model, tokenizer, layout)] = _models(tiny, seeds=(3,))
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    texts = ["rock party", "sad jazz songs for a rainy day"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    exclude = [[0, 5, 7], []]
    ref_items, ref_scores = constrained_generate(
        model, enc["input_ids"], enc["attention_mask"], trie, layout, k=6, num_beams=12,
        exclude=exclude,
    )  # fmt: skip
    items, scores = ensemble_generate(
        [_member(model, tokenizer, layout, texts)], trie, k=6, num_beams=12, exclude=exclude
    )
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
    assert not np.isin(items[0], exclude[0]).any()


def test_a_wide_beam_finds_the_exact_top_k_of_the_mean_score(tiny):
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.trie import FlatTrie

    catalog, members = _models(tiny)
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    text = "chill pop"
    exact = np.mean([_exact_scores(m, t, lay, catalog, text) for m, t, lay in members], axis=0)
    # beam as wide as the catalogue: nothing is pruned, so the search is exact
    items, scores = ensemble_generate(
        [_member(m, t, lay, [text]) for m, t, lay in members], trie, k=8, num_beams=len(catalog)
    )
    order = np.argsort(-exact, kind="stable")[:8]
    np.testing.assert_allclose(scores[0], exact[order], atol=1e-4)
    assert set(items[0].tolist()) == set(order.tolist())
    # and it is neither member's own top 8
    for m, t, lay in members:
        own = np.argsort(-_exact_scores(m, t, lay, catalog, text))[:8]
        assert set(own.tolist()) != set(items[0].tolist())


def test_the_search_scores_only_the_id_columns_and_gets_the_full_vocabularys_answer(tiny):
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.trie import FlatTrie

    catalog, members = _models(tiny)
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    texts = ["chill pop", "rock party anthems"]
    widths = []
    for model, _, _ in members:
        head = model.get_output_embeddings()
        head.register_forward_hook(lambda mod, args, out: widths.append(out.shape[-1]))

    def search(compact):
        return ensemble_generate(
            [_member(m, t, lay, texts) for m, t, lay in members],
            trie,
            k=6,
            num_beams=12,
            compact_scores=compact,
        )

    items, scores = search(True)
    scored = members[0][0].get_output_embeddings().token_ids.numel()
    assert set(widths) == {scored} and scored == sum(catalog.level_sizes) + 1
    # the same search on the masked full-vocabulary logits
    widths.clear()
    full_items, full_scores = search(False)
    assert set(widths) == {members[0][0].get_output_embeddings().vocab_size}
    np.testing.assert_array_equal(items, full_items)
    np.testing.assert_allclose(scores, full_scores, atol=1e-5)


def test_item_scores_are_the_scores_the_search_gives(tiny):
    from text2tracks.code_search import ensemble_item_scores
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.trie import FlatTrie

    catalog, members = _models(tiny)
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    texts = ["chill pop", "rock party anthems"]
    ens = [_member(m, t, lay, texts) for m, t, lay in members]
    items, scores = ensemble_generate(ens, trie, k=6, num_beams=12, weights=[0.3, 0.7])
    codes = np.asarray(catalog.sid_codes)
    again = ensemble_item_scores(ens, codes[items], weights=[0.3, 0.7])
    np.testing.assert_allclose(again, scores, atol=1e-4)
    # any items, not only the beam's: each member's exact teacher-forced sum, averaged
    some = np.array([[0, 3, 9], [4, 4, 1]])
    exact = [
        np.mean([_exact_scores(m, t, lay, catalog, text)[row] for m, t, lay in members], axis=0)
        for text, row in zip(texts, some, strict=True)
    ]
    np.testing.assert_allclose(ensemble_item_scores(ens, codes[some]), exact, atol=1e-4)
    with pytest.raises(ValueError, match="batch=2"):
        ensemble_item_scores(ens, codes[some[:1]])


def test_weights_select_a_member_and_bad_input_is_refused(tiny):
    from text2tracks.decoding import constrained_generate
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.trie import FlatTrie

    catalog, members = _models(tiny)
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    texts = ["metal workout"]
    ens = [_member(m, t, lay, texts) for m, t, lay in members]
    items, _ = ensemble_generate(ens, trie, k=5, num_beams=10, weights=[0.0, 1.0])
    m, t, lay = members[1]
    enc = t(texts, return_tensors="pt")
    ref, _ = constrained_generate(
        m, enc["input_ids"], enc["attention_mask"], trie, lay, k=5, num_beams=10
    )
    np.testing.assert_array_equal(items, ref)
    with pytest.raises(ValueError, match="at least one member"):
        ensemble_generate([], trie, k=5)
    with pytest.raises(ValueError, match="weights"):
        ensemble_generate(ens, trie, k=5, weights=[1.0])
    short = _member(m, t, lay, texts + ["more"])
    with pytest.raises(ValueError, match="prompts"):
        ensemble_generate([ens[0], short], trie, k=5)


def test_members_with_other_vocabularies_decode_together(tiny):
    """A member whose ID tokens sit elsewhere in its vocabulary (another tokenizer) reads the
    same code-space beam: swapping which member comes first changes nothing."""
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.modeling import build_seq2seq
    from text2tracks.trie import FlatTrie

    catalog = SemanticIDCatalog.load(tiny / "semantic_ids" / "catalog")
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    built = []
    for seed, tok in ((1, "bytes"), (2, "subword")):
        torch.manual_seed(seed)
        config = tiny_model_config(tokenizer=tok, subword_vocab_size=300)
        texts = ["rock party", "sad jazz", "pop hits for the car"] * 5
        built.append(build_seq2seq(config, catalog.level_sizes, prompt_texts=texts))
    assert built[0][2].offsets != built[1][2].offsets
    texts = ["rock party", "a prompt never seen"]
    a = [_member(m, t, lay, texts) for m, t, lay in built]
    items_ab, scores_ab = ensemble_generate(a, trie, k=5, num_beams=10)
    items_ba, scores_ba = ensemble_generate(a[::-1], trie, k=5, num_beams=10)
    np.testing.assert_array_equal(items_ab, items_ba)
    np.testing.assert_allclose(scores_ab, scores_ba, atol=1e-5)


def test_the_api_loads_members_and_decodes_them_as_one(tiny, tmp_path):
    from text2tracks.artifacts import component_writer
    from text2tracks.ensemble import MemberModel, search_ensemble
    from text2tracks.modeling import save_seq2seq
    from text2tracks.pipeline import Text2Tracks

    artifact = tmp_path / "artifact"
    shutil.copytree(tiny, artifact)
    single = Text2Tracks.from_pretrained(artifact, device="cpu")
    assert single.members == []
    catalog, [(model, tokenizer, layout)] = _models(artifact, seeds=(5,))
    config = tiny_model_config()
    with component_writer(artifact, "seq2seq_1", {"member": 1}) as tmp:
        save_seq2seq(model, tokenizer, layout, tmp, config)
    ensemble = Text2Tracks.from_pretrained(artifact, device="cpu")
    assert len(ensemble.members) == 1
    prompts = ["rock party", "chill jazz"]
    got = ensemble.recommend_arrays(
        prompts, k=5, num_beams=10, exclude=[ensemble.catalog.item_ids[0]]
    )
    # what search_ensemble gives for the two models directly
    first = MemberModel(single.model, single.tokenizer, single.layout, 32)
    second = MemberModel(model, tokenizer, layout, 32)
    excluded = [np.array([0]), np.array([0])]
    items, _ = search_ensemble(
        [first, second], catalog, ensemble.trie, prompts, excluded, None, k=5, num_beams=10,
        diversity=ensemble.diversity, first_index=0, stacklevel=1,
    )  # fmt: skip
    np.testing.assert_array_equal(got[0], np.asarray(catalog.item_ids)[items])
    assert catalog.item_ids[0] not in set(got[0].ravel())
    own, _ = single.recommend_arrays(prompts, k=5, num_beams=10)
    assert not np.array_equal(own, got[0])
    # a member of another catalogue shape is refused with the file named
    (artifact / "seq2seq_1" / "sid_layout.json").write_text(
        (artifact / "seq2seq_1" / "sid_layout.json").read_text().replace("8", "9")
    )
    from text2tracks.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="seq2seq_1"):
        Text2Tracks.from_pretrained(artifact, device="cpu")


TRAIN_FLAGS = [
    "--d-model", "16", "--num-layers", "1", "--num-decoder-layers", "1", "--num-heads", "2",
    "--d-ff", "32", "--tokenizer", "bytes", "--batch-size", "16", "--warmup-steps", "2",
    "--eval-prompts", "8", "--num-beams", "10", "--log-every", "1", "--num-threads", "1",
    "--no-progress", "--max-steps", "2", "--eval-every", "0", "--targets-per-playlist", "2",
]  # fmt: skip


def test_training_members_side_by_side_and_stale_members_are_removed(tmp_path):
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks.artifacts import read_manifest
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from text2tracks.pipeline import Text2Tracks
    from training.train_seq2seq import build_parser, config_from_args, train

    playlists = write_demo_jsonl(tmp_path / "demo.jsonl", n_tracks=100, n_playlists=120, seed=0)
    artifact = tmp_path / "artifact"
    config = BuildIDsConfig(
        n_levels=2, codebook_size=8, kmeans_iterations=5, cf=CFConfig(factors=8, iterations=2)
    )
    run_build_ids(playlists, artifact, config, show_progress=False)
    base = ["--artifact", str(artifact), "--playlists", str(playlists), *TRAIN_FLAGS]
    threads = torch.get_num_threads()
    try:
        summary = train(config_from_args(build_parser().parse_args([*base, "--members", "2"])))
        assert [m["steps"] for m in summary["members"]] == [2, 2]
        components = read_manifest(artifact)["components"]
        assert {"seq2seq", "seq2seq_1"} <= set(components)
        assert components["seq2seq_1"]["member"] == 1
        recommender = Text2Tracks.from_pretrained(artifact, device="cpu")
        assert len(recommender.members) == 1
        a = recommender.model.state_dict()
        b = recommender.members[0].model.state_dict()
        assert any(not torch.equal(a[n], b[n]) for n in a)  # another seed, other weights
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            recs = recommender.recommend(["rock", "jazz"], k=3)
        assert all(len(r) == 3 for r in recs)
        # member 1 trained by itself draws with the seed it had beside member 0 (seed + 1):
        # the same weights, so a member can be retrained or resumed alone
        together = {n: t.clone() for n, t in b.items()}
        alone = [*base, "--members", "2", "--member", "1", "--num-threads", "1"]
        train(config_from_args(build_parser().parse_args(alone)))
        again = Text2Tracks.from_pretrained(artifact, device="cpu").members[0].model.state_dict()
        assert all(torch.allclose(together[n], again[n], atol=1e-6) for n in together)
        # a member index outside the ensemble is refused
        with pytest.raises(ValueError, match="member must be below members"):
            config_from_args(build_parser().parse_args([*base, "--members", "1", "--member", "1"]))
        # retraining with one member removes the stale seq2seq_1
        train(config_from_args(build_parser().parse_args([*base, "--members", "1"])))
    finally:
        torch.set_num_threads(threads)
    assert "seq2seq_1" not in read_manifest(artifact)["components"]
    assert not (artifact / "seq2seq_1").exists()
    assert Text2Tracks.from_pretrained(artifact, device="cpu").members == []


def test_the_search_runs_in_eval_mode_and_restores_every_modules_flag(tiny):
    from text2tracks.ensemble import ensemble_generate
    from text2tracks.trie import FlatTrie

    catalog, [(model, tokenizer, layout)] = _models(tiny, seeds=(3,))
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    member = _member(model, tokenizer, layout, ["chill pop"])
    ref = ensemble_generate([member], trie, k=4, num_beams=8)
    # training, with dropout that would change the answer, except the encoder
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.5
    model.train()
    model.get_encoder().eval()
    seen = []
    hook = model.get_decoder().register_forward_pre_hook(
        lambda mod, args: seen.append(mod.training)
    )
    try:
        got = ensemble_generate([member], trie, k=4, num_beams=8)
    finally:
        hook.remove()
    assert seen and not any(seen)
    np.testing.assert_array_equal(got[0], ref[0])
    assert model.training and model.get_decoder().training
    assert not any(mod.training for mod in model.get_encoder().modules())
