"""An HTTP service around :class:`~text2tracks.pipeline.Text2Tracks` (FastAPI + uvicorn).

Install the extra and start it::

    pip install "text2tracks[serve]"
    text2tracks serve --artifact runs/demo/artifact --port 8000

    curl -s localhost:8000/recommend -H 'content-type: application/json' \\
         -d '{"prompt": "chill 90s jazz", "k": 5}'

Endpoints:

- ``POST /recommend``: ``{"prompt": str | [str, ...], "k": 10, ...}`` with every option of
  :meth:`Text2Tracks.recommend` (``exclude``, ``num_beams``, ``diversity``, ``mode``, ``negative_prompt``,
  ``guidance_weight``, ``like_tracks``, ``edit_strength``, ``source_prompt``, ``n_samples``,
  ``seed``, ``seed_tracks``; same meaning, same defaults). The answer mirrors the API's shape:
  ``{"recommendations": [rec, ...]}`` for one prompt, ``[[rec, ...], ...]`` for a list.
- ``seed_tracks``: track ids the prompt continues, oldest first (one list for every prompt, or
  one list or null per prompt); a prompt may then be ``""``. They count towards
  ``max_track_ids`` with ``exclude`` and ``like_tracks``.
- ``GET /health``: status, catalogue size, available modes, the limits, batching counters.
- ``GET /docs`` (Swagger UI) and ``GET /openapi.json``: the schema, with examples.

Requests arriving together are batched into one decoding call by
:class:`~text2tracks.batching.MicroBatcher` (up to ``max_batch_prompts`` prompts, waiting at most
``max_wait_ms`` after the first); answers do not depend on the batch a prompt lands in.

Errors: a request outside the limits gets 422 (``k``, options) or 413 (too many prompts, a
prompt too long) with a message saying what was allowed; a full queue gets 503 with
``Retry-After``; a request the API rejects gets 422 with the API's message (the artifact's path
replaced by ``<artifact>``); anything else gets 500 ``{"detail": "internal error"}``, and the
traceback goes to the server's log only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from text2tracks.batching import MicroBatcher, RequestError, ServeLimits, make_job
from text2tracks.options import DEFAULT_EDIT_STRENGTH, LATENT_MODES, MODES, RECOMMEND_MODES

logger = logging.getLogger(__name__)

Mode = Literal[RECOMMEND_MODES]
TrackIds = list[str] | list[list[str] | None]
PerPromptText = str | list[str | None]


# ------------------------------------------------------------------------------ schema


class RecommendRequest(BaseModel):
    """One call of :meth:`Text2Tracks.recommend` (see its docstring for each option)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prompt": "chill 90s jazz", "k": 5},
                {
                    "prompt": ["sad songs", "workout hip hop"],
                    "k": 10,
                    "exclude": [["demo:x"], None],
                },
            ]
        },
    )

    prompt: str | list[str] = Field(description="a prompt, or a list of prompts")
    k: int = Field(10, description="tracks per prompt")
    exclude: TrackIds | None = Field(
        None,
        description="track ids never to recommend: one list "
        "for every prompt, or one list (or null) per prompt",
    )
    num_beams: int | None = Field(None, ge=1, description="beam width (null: the default)")
    diversity: float | None = Field(
        None,
        ge=0,
        description="diversity penalty of the generative "
        "mode (null: the default; 0: the beam's own order)",
    )
    mode: Mode = "generative"
    negative_prompt: PerPromptText | None = None
    guidance_weight: float | None = None
    like_tracks: TrackIds | None = None
    edit_strength: float = DEFAULT_EDIT_STRENGTH
    source_prompt: PerPromptText | None = None
    n_samples: int | None = None
    seed: int | None = 0
    seed_tracks: TrackIds | None = Field(
        None,
        description="track ids the prompt continues, oldest first: one list for every "
        "prompt, or one list (or null) per prompt; never recommended back",
    )


class Track(BaseModel):
    track_id: str
    score: float
    rank: int
    name: str | None = None
    artist: str | None = None


class RecommendResponse(BaseModel):
    recommendations: list[Track] | list[list[Track]]


# ------------------------------------------------------------------------------ the app


def create_app(recommender, limits: ServeLimits | None = None) -> FastAPI:
    """The ASGI app serving ``recommender`` (a loaded :class:`Text2Tracks`)."""
    from contextlib import asynccontextmanager

    limits = limits or ServeLimits()
    batcher = MicroBatcher(recommender, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(
        title="text2tracks",
        description="Prompt-based music recommendation by generative retrieval over semantic "
        "IDs. POST /recommend with one prompt or a list.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 503 else None
        return JSONResponse({"detail": err.message}, status_code=err.status, headers=headers)

    @app.exception_handler(Exception)
    async def internal(request: Request, err: Exception) -> JSONResponse:
        logger.error("unhandled error on %s", request.url.path, exc_info=err)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={
            413: {"description": "too many prompts, or a prompt too long"},
            422: {"description": "k or an option out of range"},
            503: {"description": "the queue is full; retry"},
        },
    )
    async def recommend(body: RecommendRequest) -> dict[str, Any]:
        """Recommend ``k`` tracks for a prompt, or for each prompt of a list."""
        if body.mode in LATENT_MODES and not recommender.has_diffusion:
            raise RequestError(
                422,
                f"mode={body.mode!r} needs a diffusion head and this "
                "service's artifact has none; use mode='generative'",
            )
        if body.mode == "cf-blend" and recommender.seed_blend is None:
            raise RequestError(
                422,
                "mode='cf-blend' needs a fitted seed blend and this service's artifact has "
                "none; use mode='generative'",
            )
        job = make_job(body, limits, len(recommender))
        if not job.prompts:
            return {"recommendations": []}
        answers = await batcher.submit(job)
        return {"recommendations": _plain(answers)}

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, what the service offers, and the batcher's counters."""
        modes = list(MODES) if recommender.has_diffusion else ["generative"]
        modes += ["cf-blend"] if recommender.seed_blend is not None else []
        return {
            "status": "ok",
            "tracks": len(recommender),
            "modes": modes,
            "limits": asdict(limits),
            "batching": batcher.stats.as_dict(),
        }

    return app


def _plain(answers: Sequence) -> list:
    if answers and isinstance(answers[0], list):
        return [_plain(row) for row in answers]
    return [
        {
            "track_id": r.track_id,
            "score": r.score,
            "rank": r.rank,
            "name": r.name,
            "artist": r.artist,
        }
        for r in answers
    ]


def _version() -> str:
    from text2tracks import __version__

    return __version__


def serve(
    artifact: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str | None = None,
    limits: ServeLimits | None = None,
    log_level: str = "info",
    torch_threads: int | None = None,
) -> None:
    """Load ``artifact`` and serve it with uvicorn until interrupted (``torch_threads``: torch's
    intra-op threads; ``None`` leaves torch's default)."""
    import uvicorn

    from text2tracks.pipeline import Text2Tracks

    if torch_threads is not None:
        import torch

        if torch_threads < 1:
            raise ValueError(f"torch_threads must be a positive integer, got {torch_threads!r}")
        torch.set_num_threads(torch_threads)

    recommender = Text2Tracks.from_pretrained(artifact, device=device)
    uvicorn.run(create_app(recommender, limits), host=host, port=port, log_level=log_level)


__all__ = ["RecommendRequest", "RecommendResponse", "ServeLimits", "Track", "create_app", "serve"]
