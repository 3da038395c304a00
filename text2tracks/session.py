"""Multi-turn refinement: a session of rounds over one prompt, with the user's feedback between.

A :class:`RecommendationSession` is a thin layer over the public
:meth:`text2tracks.pipeline.Text2Tracks.recommend`: it keeps what was shown and what the user
said of it, and turns that into the next call's options (DAR and ADaFuSE refine the same way)::

    from text2tracks.session import RecommendationSession

    session = RecommendationSession(recommender, "rainy morning", mode="hybrid", k=10)
    first = session.next()                      # round 0: the prompt alone
    session.feedback(liked=[first[0].track_id], skipped=[r.track_id for r in first[1:]])
    second = session.next()                     # round 1: pulled towards the liked track

The rules, round after round:

* every track already shown (liked, skipped or left without feedback) goes into ``exclude``, so
  no track is shown twice;
* liked tracks pull the next query, oldest first:

  - ``mode="generative"``: as ``seed_tracks`` when the model reads seeds
    (``recommender.max_seed_tracks > 0``); a model trained without seeds only excludes them;
  - ``mode="latent"``: as ``like_tracks`` (an edit from the liked tracks towards the prompt,
    ``edit_strength``, by ``recommender.hybrid_settings.edit_method``: anchored by default);
  - ``mode="hybrid"``: as ``like_tracks`` for the latent view and, when the model reads seeds,
    also as ``seed_tracks`` for the beam (the beam reads seeds, the head does not); the two
    views are then fused by the fusion's ``with_likes`` where it has one (fitted on simulated
    sessions by :func:`fit_like_fusion`), the round-0 fusion otherwise;

* skipped tracks are only excluded (they are not used as negatives: ``negative_prompt`` takes
  text, and nothing in :meth:`recommend` takes negative tracks);
* ``pull=False`` turns the pull off: a "text re-query" session that only excludes.

:func:`next_rounds` answers the next round of many sessions in one batched ``recommend`` call,
with the same answers as each session's :meth:`RecommendationSession.next` (per-prompt options).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from text2tracks.options import DEFAULT_EDIT_STRENGTH

SESSION_MODES = ("generative", "latent", "hybrid")
# recommend() options that the session itself sets, round after round
_MANAGED = frozenset({"exclude", "seed_tracks", "like_tracks", "mode", "k", "edit_strength"})


class RecommendationSession:
    """Rounds of recommendations for one prompt, refined by the user's feedback.

    Args:
        recommender: a :class:`~text2tracks.pipeline.Text2Tracks`.
        prompt: the text every round answers (non-empty).
        mode: ``"generative"``, ``"latent"`` or ``"hybrid"`` (the last two need a diffusion head).
        k: tracks per round.
        pull: whether liked tracks pull the next query (see the module docstring); ``False``:
            they are only excluded.
        edit_strength: latent modes: ``recommend``'s ``edit_strength`` for the liked tracks.
        exclude: track ids never to show (besides those already shown).
        **options: other keyword options of :meth:`recommend`, the same every round
            (``num_beams``, ``n_samples``, ``seed``, ``negative_prompt``...); those the
            session sets itself (``exclude``, ``seed_tracks``, ``like_tracks``...) are refused.

    Raises:
        ValueError: an unknown mode, a latent mode without a diffusion head, a bad ``k``, an
            empty prompt, a session-managed option.
    """

    def __init__(
        self,
        recommender,
        prompt: str,
        *,
        mode: str = "generative",
        k: int = 10,
        pull: bool = True,
        edit_strength: float = DEFAULT_EDIT_STRENGTH,
        exclude: Iterable[str] = (),
        **options: Any,
    ) -> None:
        if mode not in SESSION_MODES:
            raise ValueError(f"mode must be one of {SESSION_MODES}, got {mode!r}")
        if mode != "generative" and not getattr(recommender, "has_diffusion", False):
            raise ValueError(
                f"mode={mode!r} needs a recommender with a diffusion head "
                "(recommender.has_diffusion is False); use mode='generative'"
            )
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt must be a non-empty string, got {prompt!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        managed = sorted(_MANAGED & set(options))
        if managed:
            raise ValueError(
                f"the session sets {managed} itself; pass mode, k, edit_strength and exclude "
                "as its own arguments"
            )
        self.recommender = recommender
        self.prompt = prompt
        self.mode = mode
        self.k = k
        self.pull = bool(pull)
        self.edit_strength = float(edit_strength)
        self.options = dict(options)
        self._exclude = _track_ids(exclude, "exclude")
        self._shown: dict[str, int] = {}  # track id -> the round that showed it, in order
        self._liked: list[str] = []
        self._skipped: list[str] = []
        self._rounds = 0

    # ------------------------------------------------------------------------------ state

    @property
    def round(self) -> int:
        """How many rounds were shown (the next round's number)."""
        return self._rounds

    @property
    def shown(self) -> tuple[str, ...]:
        """Every track shown so far, in the order shown."""
        return tuple(self._shown)

    @property
    def liked(self) -> tuple[str, ...]:
        """Liked tracks, oldest first."""
        return tuple(self._liked)

    @property
    def skipped(self) -> tuple[str, ...]:
        """Skipped tracks, oldest first."""
        return tuple(self._skipped)

    def shown_in(self, round_index: int) -> tuple[str, ...]:
        """The tracks round ``round_index`` showed (0 = the first round)."""
        return tuple(t for t, r in self._shown.items() if r == round_index)

    # ------------------------------------------------------------------------------ rounds

    def request(self) -> dict[str, Any]:
        """The keyword options of the next round's :meth:`recommend` call (``k`` and ``mode``
        included, the prompt not): what :meth:`next` passes."""
        call: dict[str, Any] = {
            "k": self.k,
            "mode": self.mode,
            **self.options,
            "exclude": [*self._exclude, *self._shown],
        }
        liked = list(self._liked) if self.pull else []
        reads_seeds = getattr(self.recommender, "max_seed_tracks", 0) > 0
        if liked and reads_seeds and self.mode in ("generative", "hybrid"):
            call["seed_tracks"] = liked
        if liked and self.mode in ("latent", "hybrid"):
            call["like_tracks"] = liked
            call["edit_strength"] = self.edit_strength
        return call

    def next(self) -> list:
        """Recommend the next round's ``k`` tracks (a list of ``Recommendation``, best first,
        as :meth:`recommend` answers a single prompt) and record them as shown."""
        answer = self.recommender.recommend(self.prompt, **self.request())
        self.record([rec.track_id for rec in answer])
        return answer

    def record(self, track_ids: Sequence[str]) -> None:
        """Record ``track_ids`` as the next round's answer (what :meth:`next` does with its
        answer; :func:`next_rounds` does it for a batch). Shown tracks cannot come back."""
        ids = _track_ids(track_ids, "track_ids")
        again = [t for t in ids if t in self._shown]
        if again or len(set(ids)) != len(ids):
            raise ValueError(f"tracks shown twice in a session: {sorted(set(again)) or ids}")
        for track_id in ids:
            self._shown[track_id] = self._rounds
        self._rounds += 1

    def feedback(self, liked: Iterable[str] = (), skipped: Iterable[str] = ()) -> None:
        """Record what the user made of shown tracks: ``liked`` pull later rounds, ``skipped``
        are only kept out. Tracks left without feedback stay excluded all the same.

        Raises:
            ValueError: a track never shown, a track in both lists, a track that already got
                feedback, or a bare string instead of a list of ids.
        """
        liked, skipped = _track_ids(liked, "liked"), _track_ids(skipped, "skipped")
        never = [t for t in (*liked, *skipped) if t not in self._shown]
        if never:
            raise ValueError(f"feedback on tracks this session never showed: {never}")
        both = sorted(set(liked) & set(skipped))
        if both:
            raise ValueError(f"tracks both liked and skipped: {both}")
        rated = set(self._liked) | set(self._skipped)
        again = [t for t in (*liked, *skipped) if t in rated]
        if again or len(set(liked)) + len(set(skipped)) != len(liked) + len(skipped):
            raise ValueError(f"tracks given feedback twice: {again or [*liked, *skipped]}")
        self._liked.extend(liked)
        self._skipped.extend(skipped)


def next_rounds(sessions: Sequence[RecommendationSession], batch_size: int = 32) -> list[list]:
    """The next round of every session in one batched :meth:`recommend` call (per-prompt
    ``exclude``, ``seed_tracks`` and ``like_tracks``), recorded as each session's
    :meth:`~RecommendationSession.next` records it, and with the same answers.

    The sessions must share the recommender, mode, ``k``, ``edit_strength`` and options
    (``ValueError`` otherwise). Returns one list of ``Recommendation`` per session.
    """
    sessions = list(sessions)
    if not sessions:
        return []
    first = sessions[0]
    key = _batch_key(first)
    for i, session in enumerate(sessions):
        if not isinstance(session, RecommendationSession):
            raise ValueError(f"sessions[{i}] is a {type(session).__name__}, not a session")
        if session.recommender is not first.recommender or _batch_key(session) != key:
            raise ValueError(
                f"sessions[{i}] differs from sessions[0] in recommender, mode, k, edit_strength "
                "or options; batch only sessions that share them"
            )
    requests = [s.request() for s in sessions]
    call = {name: value for name, value in requests[0].items() if name not in _PER_PROMPT}
    call["exclude"] = [r["exclude"] for r in requests]
    for name in ("seed_tracks", "like_tracks"):
        if any(name in r for r in requests):
            call[name] = [r.get(name) for r in requests]
    if "like_tracks" in call:
        call["edit_strength"] = first.edit_strength
    answers = first.recommender.recommend(
        [s.prompt for s in sessions], batch_size=batch_size, **call
    )
    for session, answer in zip(sessions, answers, strict=True):
        session.record([rec.track_id for rec in answer])
    return answers


_PER_PROMPT = ("exclude", "seed_tracks", "like_tracks", "edit_strength")


def simulated_rounds(
    sessions: Sequence[RecommendationSession],
    relevant: Sequence[set[str]],
    rounds: int,
    batch_size: int = 32,
) -> Iterator[list[list[str]]]:
    """Run ``rounds`` rounds of ``sessions`` (batched by :func:`next_rounds`) with a simulated
    user who likes the shown tracks in ``relevant[i]`` and skips the rest; after each round's
    feedback, yield the tracks each session liked in it (in the order shown)."""
    for _ in range(rounds):
        for start in range(0, len(sessions), batch_size):
            next_rounds(sessions[start : start + batch_size], batch_size=batch_size)
        liked = []
        for session, wanted in zip(sessions, relevant, strict=True):
            last = session.shown_in(session.round - 1)
            liked.append([t for t in last if t in wanted])
            session.feedback(liked=liked[-1], skipped=[t for t in last if t not in wanted])
        yield liked


# ------------------------------------------------------------------ fusion for liked tracks


def liked_states(
    recommender,
    prompts: Sequence[str],
    relevant: Sequence[Iterable[str]],
    *,
    rounds: int = 3,
    k: int = 10,
    edit_strength: float = DEFAULT_EDIT_STRENGTH,
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Simulated hybrid-mode sessions, and the queries they ask once something was liked.

    One session per prompt (:class:`RecommendationSession`, ``mode="hybrid"``, the
    recommender's fusion as it is); after each of rounds 0..``rounds - 1`` the simulated user
    likes the shown tracks in ``relevant`` and skips the rest. Every session that has liked a
    track by then gives the next round's query: a dict with ``prompt``, ``liked`` (oldest
    first), ``shown`` (every track shown so far) and ``relevant`` (its relevant tracks not yet
    shown; queries left with none are dropped).
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    prompts, relevant = list(prompts), [set(r) for r in relevant]
    if len(prompts) != len(relevant):
        raise ValueError(f"{len(prompts)} prompts but {len(relevant)} relevant collections")
    sessions = [
        RecommendationSession(recommender, p, mode="hybrid", k=k, edit_strength=edit_strength)
        for p in prompts
    ]
    states = []
    for _ in simulated_rounds(sessions, relevant, rounds, batch_size):
        for session, wanted in zip(sessions, relevant, strict=True):
            left = wanted.difference(session.shown)
            if session.liked and left:
                states.append(
                    {
                        "prompt": session.prompt,
                        "liked": list(session.liked),
                        "shown": list(session.shown),
                        "relevant": left,
                    }
                )
    return states


def fit_like_fusion(
    recommender,
    prompts: Sequence[str],
    relevant: Sequence[Iterable[str]],
    *,
    rounds: int = 3,
    kind: str = "fixed",
    metric: str = "hits",
    k: int = 10,
    edit_strength: float = DEFAULT_EDIT_STRENGTH,
    batch_size: int = 32,
) -> tuple[Any, dict[str, Any]]:
    """Fit hybrid mode's fusion for queries that carry liked tracks, on simulated sessions.

    The queries are :func:`liked_states`'s (validation prompts, never test ones); their
    candidates are gathered as hybrid mode gathers them (the beam's ``beam_candidates`` with
    the shown tracks excluded and, for a model that reads seeds, the liked tracks as seeds; the
    latents edited from the liked tracks), and :func:`text2tracks.hybrid.fit_fusion` fits the
    weights (``kind``, ``metric`` at ``k``). The recommender is not changed:
    :meth:`~text2tracks.pipeline.Text2Tracks.fit_like_fusion` keeps the result.

    Returns:
        ``(fusion, summary)``; the summary adds ``rounds`` and ``n_sessions`` to the fit's.
    """
    from text2tracks.hybrid import fit_recommender_fusion

    known = set(recommender.catalog.item_ids)
    states = liked_states(
        recommender,
        prompts,
        [[t for t in r if t in known] for r in relevant],
        rounds=rounds,
        k=k,
        edit_strength=edit_strength,
        batch_size=batch_size,
    )
    if not states:
        raise ValueError(
            "no simulated session liked a track: give more validation prompts or rounds"
        )
    n_beam = min(recommender.hybrid_settings.beam_candidates, len(recommender))
    views = [
        _liked_views(recommender, states[i : i + batch_size], n_beam, edit_strength)
        for i in range(0, len(states), batch_size)
    ]
    stacked = tuple(np.concatenate([v[part] for v in views]) for part in range(3))  # n_beam wide
    fusion, _, summary = fit_recommender_fusion(
        recommender,
        [s["prompt"] for s in states],
        [s["relevant"] for s in states],
        kind=kind,
        metric=metric,
        k=k,
        batch_size=batch_size,
        views=stacked,
        exclude=[s["shown"] for s in states],
    )
    summary.update(rounds=rounds, n_sessions=len(prompts), edit_strength=edit_strength)
    return fusion, summary


def _liked_views(recommender, states, n_beam, edit_strength):
    """Both views of some :func:`liked_states` queries, as hybrid mode queries them."""
    prompts = [s["prompt"] for s in states]
    liked = [s["liked"] for s in states]
    seeds = {"seed_tracks": liked} if recommender.max_seed_tracks > 0 else {}
    ids, scores = recommender.recommend_arrays(
        prompts,
        k=n_beam,
        num_beams=n_beam,
        diversity=0.0,  # undiversified, as hybrid mode draws the beam
        exclude=[s["shown"] for s in states],
        batch_size=len(prompts),
        **seeds,
    )
    items = np.array(
        [[recommender.catalog.index_of(t) if t else -1 for t in row] for row in ids],
        dtype=np.int64,
    ).reshape(len(prompts), -1)
    scores = np.where(items >= 0, np.asarray(scores, dtype=np.float32).reshape(items.shape), np.nan)
    latents = recommender.sample_latents(
        prompts,
        n_samples=recommender.hybrid_settings.n_samples,
        like_tracks=liked,
        edit_strength=edit_strength,
        batch_size=len(prompts),
    )
    latents = np.asarray(latents, dtype=np.float32)
    return items, scores, latents[:, None, :] if latents.ndim == 2 else latents


def _batch_key(session: RecommendationSession) -> tuple:
    return (
        session.mode,
        session.k,
        session.pull,
        session.edit_strength,
        sorted(session.options.items(), key=lambda kv: kv[0]),
    )


def _track_ids(values: Iterable[str], name: str) -> list[str]:
    """``values`` as a list of track ids; a bare string (one id, not a list) raises."""
    if isinstance(values, str):
        raise ValueError(f"{name} must be a list of track ids, got the string {values!r}")
    out = list(values)
    bad = [v for v in out if not isinstance(v, str)]
    if bad:
        raise ValueError(f"{name} must hold track id strings, got {bad[:3]!r}")
    return out


__all__ = [
    "SESSION_MODES",
    "RecommendationSession",
    "fit_like_fusion",
    "liked_states",
    "next_rounds",
    "simulated_rounds",
]
