"""The generative model in TIGER's leave-last-out protocol (:mod:`eval.sequential`): the
``text2tracks`` row, a seq2seq model that reads a user's history as seed tracks and writes the
semantic ID of what comes next.

1. :func:`write_training_histories`: the split's training histories (never a validation or test
   item) as title-less JSONL playlists, ``{"id": "u<row>", "title": "", "tracks": [...]}``. The
   playlist readers accept an empty title (``""`` is present, so no placeholder name is
   needed). A playlist keeps the first occurrence of a repeated track (the readers' rule), so
   repeats in a history count once. The trainer needs validation playlists (it fails without any):
   for up to 500 users (seeded) the history plus its validation item, to watch training by;
   build-ids leaves them out of the CF vectors, the catalogue and the training examples, and
   no test item is in the file. ``build-ids`` splits by a hash of the playlist id, so each id
   is ``u<row>`` / ``v<row>`` or the first ``~1``, ``~2``... variant on the wanted side. With
   a ``window`` (``--history-window W``), each history is written as overlapping windows of W
   consecutive items (:func:`history_windows`), so that prefixes start anywhere in a history
   and targets lie at most W - 1 items ahead (nearer TIGER's next item); the catalogue keeps
   the same items, the CF vectors see co-occurrence within windows.
2. :func:`build_artifact`: ``text2tracks build-ids`` on that file with ``--min-count 1`` (every
   training item in the catalogue: a target outside it is a miss for the model, as an item
   never seen in training is for the baselines). The split is recorded in
   ``ARTIFACT/sequential_split.json`` (:func:`split_record`: min length, users, a digest of the
   users and training histories); an artifact whose record differs from the split being scored
   is refused (:func:`check_artifact_split`), so a model never scores users whose held-out
   items it was trained on.
3. :func:`train_artifact`: ``training.train_seq2seq`` with seeds on every playlist
   (``--seed-prob 1 --seed-title-drop 1 --seed-random-subset 0``): per playlist and epoch a
   prefix of its history (1 .. ``--max-seed-tracks`` items, log-uniform; default 20 here) is
   the prompt, and its targets are the history's *other* tracks, i.e. any later track, drawn
   uniformly: the draw of :mod:`text2tracks.seed_draw` offers no "next track only" target.
   TIGER trains on the next item; this model learns what else follows a prefix, which ranks
   the next item among the continuations.
4. :class:`SequentialModel`: per user ``recommend("", seed_tracks=history, k, num_beams)``
   through the public API, in batches; the seeds are never recommended back (the history is
   excluded, as for the baselines); a target outside the catalogue is a miss. Returns the rank
   of each target, which :mod:`eval.sequential` turns into Recall@K / NDCG@K with the
   baselines' code.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLIT_FILE = "sequential_split.json"
HISTORIES_FILE = "train_histories.jsonl"
PROTOCOL = "leave_last_out"
# TIGER reads up to 20 past items; longer histories are read from their most recent 20
DEFAULT_MAX_SEED_TRACKS = 20
# what the trainer is told before any --train-flags (which may change all but the seed draw)
TRAIN_DEFAULTS = (
    "--tokenizer bytes --members 1 --target-source playlist --eval-every 0 --no-progress "
    f"--max-seed-tracks {DEFAULT_MAX_SEED_TRACKS}"
)
SEED_DRAW_FLAGS = "--seed-prob 1.0 --seed-title-drop 1.0 --seed-random-subset 0.0"
# build-ids' split by a hash of the playlist id: ids are chosen so that every history is on the
# training side and the trainer's validation playlists below this share of the hash
VALIDATION_SIDE = 0.5
N_VALIDATION = 500
_WARNINGS_SHOWN = 3


class SplitMismatchError(ValueError):
    """An artifact built from other training histories than the split being scored."""


def split_record(split) -> dict[str, Any]:
    """What identifies a leave-last-out split: its parameters, its size and a sha256 of its
    users and training histories (the only data a model of this protocol may learn from)."""
    digest = hashlib.sha256()
    for user, history in zip(split.users, split.train, strict=True):
        digest.update(json.dumps([user, history], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return {
        "protocol": PROTOCOL,
        "min_length": int(split.min_length),
        "n_users": len(split.users),
        "n_too_short": int(split.n_too_short),
        "train_digest": digest.hexdigest(),
    }


def check_artifact_split(artifact: str | Path, split) -> dict[str, Any]:
    """The artifact's recorded split, checked against ``split``.

    Raises:
        SplitMismatchError: no record (an artifact not built by :func:`build_artifact`), or a
            record of another split; the message names the fields that differ.
    """
    path = Path(artifact) / SPLIT_FILE
    if not path.is_file():
        raise SplitMismatchError(
            f"{path} is missing: {artifact} was not built on a leave-last-out split's training "
            "histories (build it with --train-minutes), so its held-out items may be in its "
            "training data"
        )
    recorded = json.loads(path.read_text(encoding="utf-8"))
    expected = split_record(split)
    differ = [k for k in expected if recorded.get(k) != expected[k]]  # other keys: how it trained
    if differ:
        shown = ", ".join(f"{k}: {recorded.get(k)!r} vs {expected[k]!r}" for k in differ)
        raise SplitMismatchError(
            f"{artifact} was built on another split than this one (artifact vs this run: "
            f"{shown}); score it on the data and --min-length it was built with, or rebuild it"
        )
    return recorded


def _side_id(stem: str, split_seed: int, train: bool) -> str:
    """``stem``, or ``stem~1``, ``stem~2``...: the first whose hash puts it on the wanted side
    of build-ids' split (:func:`semantic_ids.playlists.unit_hash` below ``VALIDATION_SIDE``:
    validation); two tries on average."""
    from semantic_ids.playlists import unit_hash

    for attempt in range(1000):
        playlist_id = stem if not attempt else f"{stem}~{attempt}"
        if (unit_hash(split_seed, playlist_id) >= VALIDATION_SIDE) == train:
            return playlist_id
    raise RuntimeError(f"no id for {stem!r} on the {'train' if train else 'validation'} side")


def history_windows(history: Sequence[str], window: int = 0) -> list[list[str]]:
    """``history`` cut into windows of ``window`` consecutive items, every ``window // 2``, the
    last one ending at the history's end (0, or a history no longer than ``window``: the
    history whole)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 0 or window == 1:
        raise ValueError(f"window must be 0 (whole histories) or an integer >= 2, got {window!r}")
    history = list(history)
    if not window or len(history) <= window:
        return [history]
    starts = list(range(0, len(history) - window + 1, max(1, window // 2)))
    if starts[-1] != len(history) - window:
        starts.append(len(history) - window)
    return [history[s : s + window] for s in starts]


def write_training_histories(
    split,
    path: str | Path,
    split_seed: int = 0,
    n_validation: int = N_VALIDATION,
    seed: int = 0,
    window: int = 0,
) -> Path:
    """The split's training histories as title-less JSONL playlists, ids on build-ids' training
    side (cut by :func:`history_windows` with ``window`` > 0), and the trainer's validation
    playlists (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = len(split.users)
    sample = np.sort(rng.choice(n, size=min(n_validation, n), replace=False)).tolist()
    with open(path, "w", encoding="utf-8") as f:
        for row, history in enumerate(split.train):
            for j, part in enumerate(history_windows(history, window)):
                stem = f"u{row}" if not j else f"u{row}.{j}"
                record = {"id": _side_id(stem, split_seed, True), "title": "", "tracks": part}
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        for row in sample:
            tracks = [*split.train[row], split.validation[row]]
            record = {"id": _side_id(f"v{row}", split_seed, False), "title": "", "tracks": tracks}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def build_artifact(
    split,
    artifact: str | Path,
    playlists: str | Path,
    build_flags: Sequence[str] = (),
    force: bool = False,
    log: Callable[[str], None] = print,
    window: int = 0,
) -> Path:
    """Write the training histories to ``playlists`` and build ``artifact`` from them with
    ``text2tracks build-ids`` (``--min-count 1``, every history on the training side;
    ``build_flags``: more build-ids flags, e.g. ``--codebook-size 64``; ``window`` > 0: each
    history as windows of that many items, :func:`history_windows`), then record the split
    (and the window) in it.

    Raises:
        FileExistsError: ``artifact`` exists and ``force`` is False.
        ValueError: ``build_flags`` sets the split's fractions (the histories' ids are chosen
            for this module's), or build-ids refuses its input.
    """
    from text2tracks.commands.build_ids import add_parser, config_from_args, run_build_ids

    args = add_parser(None).parse_args(
        ["--playlists", str(playlists), "--artifact", str(artifact)]
        + ["--min-count", "1", "--validation-fraction", str(VALIDATION_SIDE)]
        + ["--test-fraction", "0"]
        + list(build_flags)
    )
    config = config_from_args(args)
    if config.validation_fraction != VALIDATION_SIDE or config.test_fraction:
        raise ValueError(
            "the sequential artifact places every training history on the training side: "
            "leave --validation-fraction and --test-fraction out of the build flags"
        )
    history_windows([], window)  # checks window before any work
    if Path(artifact).exists() and not force:
        raise FileExistsError(f"{artifact} already exists; pass --force to overwrite it")
    write_training_histories(split, playlists, split_seed=config.split_seed, window=window)
    result = run_build_ids(
        playlists, artifact, config, force=force, show_progress=False, log=log, reader="objects"
    )
    record = {**split_record(split), "history_window": window}
    Path(artifact, SPLIT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"artifact {artifact}: {result['n_items']} items from {len(split.train)} histories")
    return Path(artifact)


def train_artifact(
    artifact: str | Path,
    playlists: str | Path,
    minutes: float,
    train_flags: Sequence[str] = (),
    num_threads: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train the seq2seq into ``artifact`` on the histories in ``playlists`` for ``minutes``
    (``training.train_seq2seq``, in this process), prompts of seeds alone (step 3 of the module
    docstring); ``train_flags`` are more trainer flags (model size, ``--max-steps``...). Returns
    the trainer's summary."""
    from training.train_seq2seq import build_parser, config_from_args, train

    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    argv = ["--artifact", str(artifact), "--playlists", str(playlists)]
    argv += ["--max-minutes", str(minutes), "--num-threads", str(num_threads)]
    argv += TRAIN_DEFAULTS.split() + list(train_flags) + SEED_DRAW_FLAGS.split()
    config = config_from_args(build_parser().parse_args(argv))
    log(f"training {artifact} for {minutes} min: {' '.join(argv[4:])}")
    summary = train(config)
    log(
        f"trained {summary.get('steps')} steps in {summary.get('elapsed_s', 0.0):.0f} s "
        f"({summary.get('stopped_by')})"
    )
    return summary


def split_flags(flags: str | Sequence[str] | None) -> list[str]:
    """Flags given as one shell-quoted string (the command line's ``--train-flags "..."``) or
    as a list."""
    if flags is None:
        return []
    return shlex.split(flags) if isinstance(flags, str) else list(flags)


@dataclass
class SequentialModel:
    """A recommender asked the protocol's question: what comes after this history.

    Attributes:
        recommender: a :class:`~text2tracks.pipeline.Text2Tracks` (or anything with its
            ``recommend``, ``catalog.item_ids`` and ``max_seed_tracks``).
        k: tracks per user (the depth of the ranks; Recall@10 needs 10).
        num_beams: beam width (TIGER's protocol: 10).
        batch_size: users per ``recommend`` call.
        log: where the API's warnings are summarised.
    """

    recommender: Any
    k: int = 10
    num_beams: int = 10
    batch_size: int = 64
    log: Callable[[str], None] = print
    _known: set[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("k", "num_beams", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_beams < self.k:
            raise ValueError(f"num_beams must be at least k ({self.k}), got {self.num_beams}")

    @property
    def known(self) -> set[str]:
        """The item ids of the model's catalogue."""
        if self._known is None:
            self._known = set(self.recommender.catalog.item_ids)
        return self._known

    def describe(self) -> dict[str, Any]:
        """The settings a results file records."""
        return {
            "k": self.k,
            "num_beams": self.num_beams,
            "max_seed_tracks": int(getattr(self.recommender, "max_seed_tracks", 0)),
            "catalogue": len(self.known),
        }

    def rank(
        self, histories: Sequence[Sequence[str]], targets: Sequence[str]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """``(ranks, notes)``: the 0-based rank of each target in the model's answer to its
        history (``k`` when absent: a miss), and counts of what could not be asked.

        A history's items outside the catalogue are dropped before the call (counted in
        ``unknown_seeds``); a user with none left is not asked (``unanswered``, a miss)."""
        ranks, notes, _ = self.rank_and_answer(histories, targets)
        return ranks, notes

    def rank_and_answer(self, histories, targets) -> tuple[np.ndarray, dict[str, Any], list]:
        """:meth:`rank` and the answers it ranked (:meth:`answer`): ``(ranks, notes, answers)``."""
        if len(histories) != len(targets):
            raise ValueError(f"{len(histories)} histories but {len(targets)} targets")
        answers, notes = self.answer(histories)
        ranks = np.full(len(targets), self.k, dtype=np.int64)
        for i, (ids, _) in enumerate(answers):
            if targets[i] in ids:
                ranks[i] = ids.index(targets[i])
        notes["targets_outside_catalogue"] = sum(t not in self.known for t in targets)
        return ranks, notes, answers

    def answer(
        self, histories: Sequence[Sequence[str]]
    ) -> tuple[list[tuple[list[str], list[float]]], dict[str, Any]]:
        """``(answers, notes)``: per history the model's ``(item ids, scores)``, best first
        (empty for a user it could not ask), and the counts :meth:`rank` reports."""
        seeds = [[t for t in h if t in self.known] for h in histories]
        cap = max(1, int(getattr(self.recommender, "max_seed_tracks", 0)))
        # similar lengths together: less padding in each batch (answers do not depend on it)
        rows = sorted((i for i, s in enumerate(seeds) if s), key=lambda i: min(len(seeds[i]), cap))
        out: list[tuple[list[str], list[float]]] = [([], []) for _ in histories]
        said: Counter = Counter()
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            answers = self._recommend([seeds[i] for i in batch], cap, said)
            for i, answer in zip(batch, answers, strict=True):
                out[i] = ([r.track_id for r in answer], [float(r.score) for r in answer])
        if said:
            shown = "; ".join(f"{n}x {m}" for m, n in said.most_common(_WARNINGS_SHOWN))
            self.log(f"text2tracks: API warnings: {shown}")
        notes = {
            "unanswered": len(histories) - len(rows),
            "unknown_seeds": sum(len(h) for h in histories) - sum(len(s) for s in seeds),
            "api_warnings": dict(said.most_common(_WARNINGS_SHOWN)),
        }
        return out, notes

    def _recommend(self, seeds: list[list[str]], cap: int, said: Counter) -> list:
        """One API call of empty prompts with seeds: the most recent ``cap`` (what the model
        reads) as seeds, the older ones excluded (the whole history stays out of the answer,
        without a truncation warning per user); other warnings counted in ``said`` by kind
        (numbers blanked)."""
        older = [s[:-cap] or None for s in seeds]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            answers = self.recommender.recommend(
                [""] * len(seeds),
                k=self.k,
                num_beams=self.num_beams,
                batch_size=self.batch_size,
                seed_tracks=[s[-cap:] for s in seeds],
                exclude=older if any(older) else None,
            )
        said.update(re.sub(r"\d+", "N", str(w.message).split(";")[0]) for w in caught)
        return answers

    def score_candidates(
        self, histories: Sequence[Sequence[str]], candidates: Sequence[Sequence[str]]
    ) -> np.ndarray:
        """``(n_histories, longest)`` the model's score of each candidate item id after its
        history (:meth:`text2tracks.Text2Tracks.score_tracks`, the score its search would give
        it), the history's most recent ``max_seed_tracks`` catalogue items as the seeds, as
        :meth:`answer` asks them; NaN past a row's end, for a candidate outside the catalogue
        and for a history with no catalogue item."""
        if len(histories) != len(candidates):
            raise ValueError(f"{len(histories)} histories but {len(candidates)} candidate lists")
        out = np.full((len(histories), max((len(c) for c in candidates), default=0)), np.nan)
        cap = max(1, int(getattr(self.recommender, "max_seed_tracks", 0)))
        seeds = [[t for t in h if t in self.known][-cap:] for h in histories]
        rows = sorted((i for i, s in enumerate(seeds) if s), key=lambda i: len(seeds[i]))
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            keep = [[j for j, t in enumerate(candidates[i]) if t in self.known] for i in batch]
            if not any(keep):
                continue
            scores = self.recommender.score_tracks(
                [""] * len(batch),
                [[candidates[i][j] for j in cols] for i, cols in zip(batch, keep, strict=True)],
                seed_tracks=[seeds[i] for i in batch],
                batch_size=self.batch_size,
            )
            for row, (i, cols) in enumerate(zip(batch, keep, strict=True)):
                out[i, cols] = scores[row, : len(cols)]
        return out


def load_sequential_model(
    artifact: str | Path,
    split,
    device: str | None = None,
    num_threads: int = 0,
    **options: Any,
) -> SequentialModel:
    """The artifact's model as a :class:`SequentialModel` (``options``: its fields), after
    :func:`check_artifact_split`; torch limited to ``num_threads`` (0: torch's default)."""
    from eval.continuation_model import load_model

    check_artifact_split(artifact, split)
    recommender = load_model(artifact, device=device, num_threads=num_threads)
    if not getattr(recommender, "max_seed_tracks", 0):
        raise ValueError(
            f"{artifact}: its model was trained without seed tracks, so it cannot read a "
            "history; train it with --seed-prob (see eval.sequential --train-minutes)"
        )
    return SequentialModel(recommender, **options)
