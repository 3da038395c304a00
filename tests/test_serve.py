"""The HTTP service on the tiny artifact, through real HTTP requests: httpx against the ASGI app
(every answer compared with the in-process API), and one uvicorn server on a real socket."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")  # the optional 'serve' extra
httpx = pytest.importorskip("httpx")

from tiny_artifact import build_tiny_artifact  # noqa: E402

from text2tracks import Text2Tracks  # noqa: E402
from text2tracks.batching import ServeLimits  # noqa: E402
from text2tracks.serve import create_app  # noqa: E402

PROMPTS = [
    "chill 90s jazz",
    "sad songs",
    "workout hip hop",
    "night drive",
    "happy country",
    "rock n roll 70s",
    "oldies for slow dancing",
    "relaxing folk",
]


@pytest.fixture(scope="module")
def recommender(tmp_path_factory) -> Text2Tracks:
    artifact = build_tiny_artifact(tmp_path_factory.mktemp("serve"))
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def _post_all(app, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body to /recommend at once (one event loop, concurrent requests)."""

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/recommend", json=b) for b in bodies))

    return asyncio.run(go())


def _get(app, path: str) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(path)

    return asyncio.run(go())


def _as_json(recs) -> list[dict]:
    return [
        {
            "track_id": r.track_id,
            "score": r.score,
            "rank": r.rank,
            "name": r.name,
            "artist": r.artist,
        }
        for r in recs
    ]


def _same(got: list[dict], recs) -> bool:
    """The service's answer is the API's: the same tracks in the same order, the same scores up
    to float noise (a batch pads prompts to its longest, which moves the last digits)."""
    want = _as_json(recs)
    strip = [{k: v for k, v in r.items() if k != "score"} for r in got]
    return strip == [{k: v for k, v in r.items() if k != "score"} for r in want] and all(
        g["score"] == pytest.approx(w["score"], rel=1e-5, abs=1e-5)
        for g, w in zip(got, want, strict=True)
    )


def test_answers_are_the_apis_for_one_prompt_and_for_a_list(recommender):
    app = create_app(recommender)
    one, many = _post_all(
        app,
        [
            {"prompt": "sad songs", "k": 5},
            {"prompt": PROMPTS[:3], "k": 4, "exclude": [["x:unknown"], None, None]},
        ],
    )
    assert one.status_code == 200 and many.status_code == 200
    assert _same(one.json()["recommendations"], recommender.recommend("sad songs", k=5))
    expected = recommender.recommend(PROMPTS[:3], k=4)
    assert all(_same(g, w) for g, w in zip(many.json()["recommendations"], expected, strict=True))
    banned = [r["track_id"] for r in one.json()["recommendations"][:2]]
    (again,) = _post_all(app, [{"prompt": "sad songs", "k": 5, "exclude": banned}])
    assert not set(banned) & {r["track_id"] for r in again.json()["recommendations"]}
    (empty,) = _post_all(app, [{"prompt": [], "k": 5}])
    assert empty.json() == {"recommendations": []}


def test_requests_arriving_together_share_a_decoding_call(recommender):
    app = create_app(recommender, ServeLimits(max_wait_ms=200, max_batch_prompts=64))
    bodies = [{"prompt": p, "k": 5} for p in PROMPTS] + [{"prompt": PROMPTS[:2], "k": 5}]
    answers = _post_all(app, bodies)
    assert [a.status_code for a in answers] == [200] * len(bodies)
    for body, answer in zip(bodies, answers, strict=True):
        got, want = answer.json()["recommendations"], recommender.recommend(body["prompt"], k=5)
        if isinstance(body["prompt"], str):
            got, want = [got], [want]
        assert all(_same(g, w) for g, w in zip(got, want, strict=True))
    batching = _get(app, "/health").json()["batching"]
    assert batching["requests"] == len(bodies) and batching["prompts"] == len(PROMPTS) + 2
    assert batching["calls"] < len(bodies)  # batched: fewer decoding calls than requests


def test_calls_with_different_options_are_not_mixed(recommender):
    app = create_app(recommender, ServeLimits(max_wait_ms=200))
    a, b = _post_all(app, [{"prompt": "sad songs", "k": 3}, {"prompt": "sad songs", "k": 6}])
    assert len(a.json()["recommendations"]) == 3 and len(b.json()["recommendations"]) == 6
    assert _get(app, "/health").json()["batching"]["calls"] == 2


def test_limits_answer_clear_4xx(recommender):
    limits = ServeLimits(max_k=20, max_prompt_chars=40, max_prompts=3)
    app = create_app(recommender, limits)
    cases = [
        ({"prompt": "sad songs", "k": 0}, 422, "k must be between 1 and 20"),
        ({"prompt": "sad songs", "k": 21}, 422, "k must be between 1 and 20, got 21"),
        ({"prompt": ["a", "b", "c", "d"], "k": 5}, 413, "4 prompts in one request; at most 3"),
        ({"prompt": "x" * 41, "k": 5}, 413, "prompt 0 has 41 characters; at most 40"),
        ({"prompt": ["ok", "y" * 50]}, 413, "prompt 1 has 50 characters"),
        ({"prompt": ["a", "b"], "exclude": [["x"]]}, 422, "exclude has 1 lists for 2 prompts"),
    ]
    answers = _post_all(app, [body for body, _, _ in cases])
    for (body, status, message), answer in zip(cases, answers, strict=True):
        assert answer.status_code == status, (body, answer.text)
        assert message in answer.json()["detail"], (body, answer.text)
    for body in (
        {"prompt": "sad songs", "k": "ten"},
        {"prompt": "sad songs", "colour": "red"},
        {"k": 5},
        {"prompt": 3},
        {"prompt": "a", "mode": "magic"},
    ):
        (answer,) = _post_all(app, [body])
        assert answer.status_code == 422, (body, answer.text)


def test_the_apis_own_refusals_are_422_and_hide_the_artifact_path(recommender):
    app = create_app(recommender, ServeLimits(max_wait_ms=100))
    good, blank, latent_option, latent_mode = _post_all(
        app,
        [
            {"prompt": "sad songs", "k": 5},
            {"prompt": ["jazz", "   "], "k": 5},  # batched with the good one, fails alone
            {"prompt": "sad songs", "k": 5, "negative_prompt": "rock"},
            {"prompt": "sad songs", "k": 5, "mode": "latent"},
        ],
    )
    assert good.status_code == 200
    assert _same(good.json()["recommendations"], recommender.recommend("sad songs", k=5))
    assert blank.status_code == 422 and "prompt 1 is empty" in blank.json()["detail"]
    assert latent_option.status_code == 422
    assert "need mode='latent' or mode='hybrid'" in latent_option.json()["detail"]
    assert (
        latent_mode.status_code == 422 and "needs a diffusion head" in latent_mode.json()["detail"]
    )
    for answer in (blank, latent_option, latent_mode):
        assert str(recommender._source_dir) not in answer.text


class _Broken:
    """A recommender whose model fails with an internal message that must not reach clients."""

    has_diffusion = False
    _source_dir = None

    def __len__(self) -> int:
        return 100

    def recommend(self, *args, **kwargs):
        raise RuntimeError("CUDA error at /srv/secret/artifact/seq2seq: device-side assert")


def test_internal_errors_are_a_plain_500(caplog):
    app = create_app(_Broken())
    with caplog.at_level("ERROR"):
        answers = _post_all(app, [{"prompt": "sad songs", "k": 5}, {"prompt": ["a", "b"], "k": 5}])
    for answer in answers:
        assert answer.status_code == 500
        assert answer.json() == {"detail": "internal error"}
        assert "secret" not in answer.text and "CUDA" not in answer.text
    assert "device-side assert" in caplog.text  # the server's log keeps it


def test_health_and_openapi(recommender):
    app = create_app(recommender)
    health = _get(app, "/health").json()
    assert health["status"] == "ok" and health["tracks"] == len(recommender)
    assert health["modes"] == ["generative"] and health["limits"]["max_k"] == 100
    schema = _get(app, "/openapi.json").json()
    assert {"/recommend", "/health"} <= set(schema["paths"])
    assert "RecommendRequest" in schema["components"]["schemas"]
    assert _get(app, "/docs").status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_on_a_socket(recommender):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(recommender), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/health").json()["status"] == "ok"
            answer = client.post("/recommend", json={"prompt": ["sad songs", "jazz"], "k": 3})
            assert answer.status_code == 200
            expected = recommender.recommend(["sad songs", "jazz"], k=3)
            assert all(
                _same(g, w) for g, w in zip(answer.json()["recommendations"], expected, strict=True)
            )
            assert client.post("/recommend", json={"prompt": "x", "k": 1000}).status_code == 422
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_cf_blend_is_offered_once_fitted_and_answers_as_the_api(tmp_path):
    from text2tracks.artifacts import artifact_split

    artifact = build_tiny_artifact(tmp_path)
    split = artifact_split(artifact, tmp_path / "demo.jsonl")
    fresh = Text2Tracks.from_pretrained(artifact, device="cpu")
    seeds = list(split.test[0].track_ids[:3])
    body = {"prompt": "chill", "k": 5, "mode": "cf-blend", "seed_tracks": seeds}
    app = create_app(fresh)
    assert "cf-blend" not in _get(app, "/health").json()["modes"]
    (refused,) = _post_all(app, [body])
    assert refused.status_code == 422 and "seed blend" in refused.json()["detail"]
    fresh.fit_seed_blend(split.train, split.validation, k=10, per_category=5)
    app = create_app(fresh)
    assert "cf-blend" in _get(app, "/health").json()["modes"]
    (answer,) = _post_all(app, [body])
    assert answer.status_code == 200
    want = fresh.recommend("chill", k=5, mode="cf-blend", seed_tracks=seeds)
    assert _same(answer.json()["recommendations"], want)
