"""Micro-batching for the HTTP service: requests arriving together share one decoding call.

:class:`MicroBatcher` takes :class:`Job` s (one request each, its options spread over its
prompts by :func:`make_job`, which also enforces the :class:`ServeLimits`) from an asyncio queue.
Its worker takes the first waiting job, then whatever else arrives within ``max_wait_ms`` (up
to ``max_batch_prompts`` prompts), groups the jobs whose call-wide options agree (mode, k,
beams, sampling) and runs each group as one :meth:`Text2Tracks.recommend` call in a thread, so
the event loop keeps accepting requests while the model runs. Per-prompt options (exclude,
negative prompt, like tracks, source prompt, seed tracks) travel per prompt. The API's answers do not depend
on the batch a prompt lands in, so batching changes speed, never results.

Standard library only: :mod:`text2tracks.serve` puts FastAPI in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("text2tracks.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for, and how requests are batched.

    Attributes:
        max_k: largest ``k`` (capped at the catalogue size).
        max_prompt_chars: longest prompt, in characters (also for negative and source prompts).
        max_prompts: prompts per request.
        max_track_ids: track ids per request, over ``exclude``, ``like_tracks`` and
            ``seed_tracks``.
        max_batch_prompts: prompts per decoding call (requests are batched up to it).
        max_wait_ms: how long the batcher waits for more requests after the first one.
        max_queue: requests waiting at most; more get 503.
    """

    max_k: int = 100
    max_prompt_chars: int = 512
    max_prompts: int = 64
    max_track_ids: int = 10_000
    max_batch_prompts: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "max_k",
            "max_prompt_chars",
            "max_prompts",
            "max_track_ids",
            "max_batch_prompts",
            "max_queue",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")


class RequestError(Exception):
    """A request the service refuses: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Job:
    """One request, its options spread over its prompts (one entry per prompt)."""

    prompts: list[str]
    single: bool
    key: tuple  # the call-wide options; jobs with the same key share a decoding call
    per_prompt: dict[str, list]  # one list per name of _PER_PROMPT
    future: asyncio.Future = field(repr=False, default=None)

    def call_options(self) -> dict[str, Any]:
        return dict(zip(_CALL_WIDE, self.key, strict=True))


_CALL_WIDE = (
    "k",
    "num_beams",
    "diversity",
    "mode",
    "guidance_weight",
    "edit_strength",
    "n_samples",
    "seed",
)
_PER_PROMPT = ("exclude", "negative_prompt", "like_tracks", "source_prompt", "seed_tracks")
_TRACK_ID_OPTIONS = ("exclude", "like_tracks", "seed_tracks")  # counted in max_track_ids


def _spread_ids(value, n: int, single: bool, name: str) -> list:
    """Track ids given for every prompt, or one list (or null) per prompt -> one per prompt."""
    if value is None:
        return [None] * n
    if single or not value or not all(v is None or isinstance(v, list) for v in value):
        return [list(value)] * n
    if len(value) != n:
        raise RequestError(
            422,
            f"{name} has {len(value)} lists for {n} prompts; give one per "
            "prompt, or one list of track ids for all of them",
        )
    return list(value)


def _spread_text(value, n: int, single: bool, name: str) -> list:
    if value is None or isinstance(value, str):
        return [value] * n
    if single:
        raise RequestError(422, f"{name} must be a string or null for one prompt")
    if len(value) != n:
        raise RequestError(
            422,
            f"{name} has {len(value)} entries for {n} prompts; give one "
            "(string or null) per prompt, or one string for all",
        )
    return list(value)


def make_job(body, limits: ServeLimits, n_items: int) -> Job:
    """Check a request (anything with the attributes of ``serve.RecommendRequest``) against the
    limits and spread its options over its prompts."""
    single = isinstance(body.prompt, str)
    prompts = [body.prompt] if single else list(body.prompt)
    n = len(prompts)
    if n > limits.max_prompts:
        raise RequestError(413, f"{n} prompts in one request; at most {limits.max_prompts}")
    max_k = min(limits.max_k, n_items)
    if not 1 <= body.k <= max_k:
        raise RequestError(422, f"k must be between 1 and {max_k}, got {body.k}")
    if body.num_beams is not None and body.num_beams > max(4 * max_k, 2):
        raise RequestError(
            422, f"num_beams must be at most {max(4 * max_k, 2)}, got {body.num_beams}"
        )
    per_prompt = {
        "exclude": _spread_ids(body.exclude, n, single, "exclude"),
        "like_tracks": _spread_ids(body.like_tracks, n, single, "like_tracks"),
        "negative_prompt": _spread_text(body.negative_prompt, n, single, "negative_prompt"),
        "source_prompt": _spread_text(body.source_prompt, n, single, "source_prompt"),
        "seed_tracks": _spread_ids(body.seed_tracks, n, single, "seed_tracks"),
    }
    for name, texts in (
        ("prompt", prompts),
        ("negative_prompt", per_prompt["negative_prompt"]),
        ("source_prompt", per_prompt["source_prompt"]),
    ):
        for i, text in enumerate(texts):
            if text is not None and len(text) > limits.max_prompt_chars:
                raise RequestError(
                    413, f"{name} {i} has {len(text)} characters; at most {limits.max_prompt_chars}"
                )
    if body.like_tracks == []:
        raise RequestError(422, "like_tracks is empty; give some track ids, or null")
    n_ids = sum(_count_ids(getattr(body, name)) for name in _TRACK_ID_OPTIONS)
    if n_ids > limits.max_track_ids:
        raise RequestError(
            413,
            f"{n_ids} track ids in {', '.join(_TRACK_ID_OPTIONS)}; at most {limits.max_track_ids}",
        )
    key = tuple(getattr(body, name) for name in _CALL_WIDE)
    return Job(prompts, single, key, per_prompt)


def _count_ids(value) -> int:
    """Track ids in a request's ``exclude`` / ``like_tracks`` / ``seed_tracks`` (as given,
    before spreading)."""
    if not value:
        return 0
    if all(v is None or isinstance(v, list) for v in value):
        return sum(len(v) for v in value if v)
    return len(value)


def _join(values: list) -> Any:
    """Per-prompt values of a group -> the API's argument (None when no prompt has one)."""
    return None if all(v is None for v in values) else values


@dataclass
class BatchStats:
    """What the batcher did: decoding calls, prompts, and calls per batch size."""

    calls: int = 0
    prompts: int = 0
    requests: int = 0
    sizes: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompts": self.prompts,
            "requests": self.requests,
            "batch_sizes": {str(s): c for s, c in sorted(self.sizes.items())},
        }


class MicroBatcher:
    """Collects requests from an asyncio queue and answers them in shared decoding calls.

    One worker task takes the first waiting job, then whatever else arrives within
    ``max_wait_ms`` (up to ``max_batch_prompts`` prompts), groups the jobs by their call-wide
    options and runs each group as one :meth:`Text2Tracks.recommend` call in a thread, so the
    event loop keeps accepting requests while the model runs. A group the API rejects is
    retried job by job, so that one bad request fails alone.
    """

    def __init__(self, recommender, limits: ServeLimits) -> None:
        self.recommender = recommender
        self.limits = limits
        self.stats = BatchStats()
        self._queue: asyncio.Queue[Job] | None = None
        self._worker: asyncio.Task | None = None

    def _start(self) -> None:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue(maxsize=self.limits.max_queue)
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, job: Job):
        """Queue a job and wait for its answer (the API's shape)."""
        self._start()
        job.future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise RequestError(503, "the service is busy; retry shortly") from None
        return await job.future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def _run(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].prompts)
            deadline = time.monotonic() + self.limits.max_wait_ms / 1000
            while size < self.limits.max_batch_prompts:
                try:
                    job = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(self._queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                jobs.append(job)
                size += len(job.prompts)
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                if not job.future.done():  # a client that went away is not decoded for
                    groups.setdefault(job.key, []).append(job)
            for group in groups.values():
                await self._answer(group)

    async def _answer(self, group: list[Job]) -> None:
        try:
            answers = await asyncio.to_thread(self._decode, group)
        except Exception as err:  # noqa: BLE001 - retried one by one: each job gets its own error
            if len(group) == 1:
                self._fail(group[0], *client_error(err, self.recommender))
                return
            for job in group:
                await self._answer([job])
            return
        start = 0
        for job in group:
            rows = answers[start : start + len(job.prompts)]
            start += len(job.prompts)
            if not job.future.done():
                job.future.set_result(rows[0] if job.single else rows)

    def _decode(self, group: list[Job]) -> list:
        prompts = [p for job in group for p in job.prompts]
        per_prompt = {
            name: _join([v for job in group for v in job.per_prompt[name]]) for name in _PER_PROMPT
        }
        answers = self.recommender.recommend(
            prompts,
            **group[0].call_options(),
            batch_size=self.limits.max_batch_prompts,
            **per_prompt,
        )
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.requests += len(group)
        self.stats.sizes[len(prompts)] += 1
        return answers

    @staticmethod
    def _fail(job: Job, status: int, message: str) -> None:
        if not job.future.done():
            job.future.set_exception(RequestError(status, message))


def client_error(err: Exception, recommender) -> tuple[int, str]:
    """What a client is told of ``err``: the API's own ValueError / TypeError messages (they say
    what was expected and what came) as 422, with the artifact's path hidden; anything else is
    a plain 500 "internal error", its traceback logged here only."""
    if isinstance(err, (ValueError, TypeError)) and not isinstance(err, UnicodeError):
        message = str(err)
        source = getattr(recommender, "_source_dir", None)
        if source is not None:
            message = message.replace(str(source), "<artifact>")
        return 422, message
    logger.error("recommend failed", exc_info=err)
    return 500, "internal error"
