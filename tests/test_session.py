"""text2tracks.session: rounds of recommendations refined by feedback.

On the tiny artifact (``tiny_artifact``: an untrained T5 over demo tracks, and a tiny diffusion
head whose answer is known: "party" means rock or pop), every round must equal the direct
``recommend`` call the rules describe (shown tracks excluded, liked tracks as ``seed_tracks`` or
``like_tracks``), and liked tracks must move the answer where they point.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact, genre_of

from text2tracks.rerank import FixedBlendFusion
from text2tracks.session import RecommendationSession, next_rounds

K = 5


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hybrid_recommender(tmp_path_factory):
    from text2tracks.pipeline import Text2Tracks

    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("session")))
    recommender = Text2Tracks.from_pretrained(artifact, device="cpu")
    recommender.fusion = FixedBlendFusion(0.5)  # no fusion.json: no default-fusion warning
    return recommender


@pytest.fixture(scope="module")
def generative_recommender(hybrid_recommender):
    """The same seq2seq without a diffusion head; it reads up to 4 seed tracks (the untrained
    model reads seed tokens as well as any)."""
    from text2tracks.pipeline import Text2Tracks

    r = hybrid_recommender
    return Text2Tracks(r.model, r.tokenizer, r.layout, r.catalog, num_beams=8, max_seed_tracks=4)


def _ids(answer) -> list[str]:
    return [rec.track_id for rec in answer]


class Spy:
    """A recommender that records each ``recommend`` call's keyword options."""

    def __init__(self, recommender):
        self._recommender = recommender
        self.calls: list[dict] = []

    def __getattr__(self, name):
        return getattr(self._recommender, name)

    def recommend(self, prompts, **options):
        self.calls.append(options)
        return self._recommender.recommend(prompts, **options)


# ------------------------------------------------------------------------------ generative mode


def test_generative_rounds_exclude_shown_tracks_and_read_liked_ones_as_seeds(
    generative_recommender,
):
    rec = generative_recommender
    session = RecommendationSession(rec, "road trip", k=K)
    first = session.next()
    assert _ids(first) == _ids(rec.recommend("road trip", k=K))
    assert session.round == 1 and session.shown == tuple(_ids(first))
    liked, skipped = _ids(first)[:2], _ids(first)[2:]
    session.feedback(liked=liked, skipped=skipped)
    second = session.next()
    shown = _ids(first)
    expected = rec.recommend("road trip", k=K, exclude=shown, seed_tracks=liked)
    assert _ids(second) == _ids(expected)
    assert not set(_ids(second)) & set(shown)
    # the seeds matter: excluding alone gives another answer
    assert _ids(second) != _ids(rec.recommend("road trip", k=K, exclude=shown))
    # a third round: both rounds' tracks excluded, the liked ones oldest first
    session.feedback(liked=[_ids(second)[0]])
    third = session.next()
    every = shown + _ids(second)
    seeds = [*liked, _ids(second)[0]]
    assert _ids(third) == _ids(rec.recommend("road trip", k=K, exclude=every, seed_tracks=seeds))
    assert session.liked == tuple(seeds) and session.skipped == tuple(skipped)
    assert session.shown_in(1) == tuple(_ids(second)) and len(session.shown) == 3 * K


def test_without_pull_or_without_a_seed_model_liked_tracks_are_only_excluded(
    generative_recommender,
):
    from text2tracks.pipeline import Text2Tracks

    r = generative_recommender
    no_seeds = Text2Tracks(r.model, r.tokenizer, r.layout, r.catalog, num_beams=8)
    for recommender, pull in ((r, False), (no_seeds, True)):
        spy = Spy(recommender)
        session = RecommendationSession(spy, "road trip", k=K, pull=pull)
        shown = _ids(session.next())
        session.feedback(liked=shown[:2])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "seeds only excluded" warning: none passed
            second = session.next()
        assert "seed_tracks" not in spy.calls[-1] and "like_tracks" not in spy.calls[-1]
        assert _ids(second) == _ids(r.recommend("road trip", k=K, exclude=shown))


def test_initial_exclude_and_other_options_reach_every_round(generative_recommender):
    rec = generative_recommender
    banned = _ids(rec.recommend("road trip", k=2))
    spy = Spy(rec)
    session = RecommendationSession(spy, "road trip", k=K, exclude=banned, num_beams=6)
    first = _ids(session.next())
    assert not set(first) & set(banned)
    assert first == _ids(rec.recommend("road trip", k=K, exclude=banned, num_beams=6))
    session.next()
    assert spy.calls[-1]["num_beams"] == 6
    assert set(spy.calls[-1]["exclude"]) == set(banned) | set(first)


# ------------------------------------------------------------------------------ latent modes


def test_hybrid_passes_liked_tracks_as_like_tracks(hybrid_recommender):
    rec = hybrid_recommender
    spy = Spy(rec)
    session = RecommendationSession(spy, "party", mode="hybrid", k=K, edit_strength=0.3)
    first = _ids(session.next())
    assert first == _ids(rec.recommend("party", k=K, mode="hybrid"))
    assert "like_tracks" not in spy.calls[0]  # nothing liked yet
    session.feedback(liked=first[:1], skipped=first[1:])
    second = _ids(session.next())
    assert spy.calls[-1]["like_tracks"] == first[:1] and spy.calls[-1]["edit_strength"] == 0.3
    assert "seed_tracks" not in spy.calls[-1]  # this model reads no seeds
    direct = rec.recommend(
        "party", k=K, mode="hybrid", exclude=first, like_tracks=first[:1], edit_strength=0.3
    )
    assert second == _ids(direct) and not set(second) & set(first)


def test_hybrid_with_a_seed_model_gives_the_beam_the_liked_tracks_too(hybrid_recommender):
    spy = Spy(hybrid_recommender)
    spy.max_seed_tracks = 4  # set on the spy: the recommender itself reads no seeds
    session = RecommendationSession(spy, "party", mode="hybrid", k=K)
    first = _ids(session.next())
    session.feedback(liked=first[:2])
    call = session.request()
    assert call["seed_tracks"] == first[:2] and call["like_tracks"] == first[:2]


def test_liked_tracks_pull_the_latent_answer_towards_their_genre(hybrid_recommender):
    """ "party" is rock or pop: liking rock tracks must give rock, liking pop tracks pop."""
    rec = hybrid_recommender
    genre = {t: genre_of(t) for t in rec.catalog.item_ids}
    by_genre = {g: [t for t in rec.catalog.item_ids if genre[t] == g] for g in ("rock", "pop")}
    share = {}
    for liked_genre, tracks in by_genre.items():
        session = RecommendationSession(rec, "party", mode="latent", k=10, edit_strength=0.2)
        session.record(tracks[:3])  # as if round 0 had shown them
        session.feedback(liked=tracks[:3])
        answer = [genre[t] for t in _ids(session.next())]
        share[liked_genre] = {g: answer.count(g) / len(answer) for g in by_genre}
    assert share["rock"]["rock"] >= 0.8 and share["pop"]["pop"] >= 0.8


# ------------------------------------------------------------------------------ batches


@pytest.mark.parametrize("mode", ["generative", "hybrid"])
def test_next_rounds_answers_as_each_session_does(mode, generative_recommender, hybrid_recommender):
    rec = generative_recommender if mode == "generative" else hybrid_recommender
    prompts = ["road trip", "party", "chill jazz"]

    def sessions():
        return [RecommendationSession(rec, p, mode=mode, k=K) for p in prompts]

    one, many = sessions(), sessions()
    for round_index in range(3):
        singles = [_ids(s.next()) for s in one]
        batched = [_ids(a) for a in next_rounds(many, batch_size=2)]
        assert batched == singles, f"round {round_index}"
        for i, (a, b) in enumerate(zip(one, many, strict=True)):
            liked = singles[i][: i % 2 + round_index % 2]  # some sessions like nothing
            for s in (a, b):
                s.feedback(liked=liked)
    assert [s.shown for s in one] == [s.shown for s in many]
    assert next_rounds([]) == []


# ------------------------------------------------------------------------------ errors


def test_bad_sessions_and_bad_feedback_raise(generative_recommender, hybrid_recommender):
    rec = generative_recommender
    with pytest.raises(ValueError, match="mode must be one of"):
        RecommendationSession(rec, "x", mode="dense")
    with pytest.raises(ValueError, match="diffusion head"):
        RecommendationSession(rec, "x", mode="hybrid")
    with pytest.raises(ValueError, match="non-empty string"):
        RecommendationSession(rec, "  ")
    with pytest.raises(ValueError, match="positive integer"):
        RecommendationSession(rec, "x", k=0)
    with pytest.raises(ValueError, match="sets \\['like_tracks', 'seed_tracks'\\] itself"):
        RecommendationSession(rec, "x", seed_tracks=["a"], like_tracks=["b"])
    session = RecommendationSession(rec, "road trip", k=K)
    with pytest.raises(ValueError, match="never showed"):
        session.feedback(liked=[rec.catalog.item_ids[0]])  # nothing shown yet
    shown = _ids(session.next())
    unseen = next(t for t in rec.catalog.item_ids if t not in shown)
    with pytest.raises(ValueError, match="never showed"):
        session.feedback(skipped=[unseen])
    with pytest.raises(ValueError, match="list of track ids"):
        session.feedback(liked=shown[0])
    with pytest.raises(ValueError, match="both liked and skipped"):
        session.feedback(liked=shown[:2], skipped=shown[1:3])
    with pytest.raises(ValueError, match="feedback twice"):
        session.feedback(liked=[shown[0], shown[0]])
    session.feedback(liked=shown[:1])
    with pytest.raises(ValueError, match="feedback twice"):
        session.feedback(skipped=shown[:1])
    assert session.liked == tuple(shown[:1]) and session.skipped == ()  # failed calls: no change
    with pytest.raises(ValueError, match="shown twice"):
        session.record(shown[:1])
    other = RecommendationSession(hybrid_recommender, "party", mode="hybrid", k=K)
    with pytest.raises(ValueError, match="differs from sessions\\[0\\]"):
        next_rounds([session, other])
    with pytest.raises(ValueError, match="differs from sessions\\[0\\]"):
        next_rounds([session, RecommendationSession(rec, "x", k=K + 1)])


def test_a_session_that_runs_out_of_tracks_says_so(generative_recommender):
    rec = generative_recommender
    everything_but = list(rec.catalog.item_ids[: len(rec) - 3])
    session = RecommendationSession(rec, "road trip", k=K, exclude=everything_but)
    with pytest.raises(ValueError, match="only 3 tracks are left"):
        session.next()
    assert session.round == 0 and session.shown == ()
    np.testing.assert_equal(
        len(RecommendationSession(rec, "x", k=3, exclude=everything_but).next()), 3
    )
