"""The ``text2tracks`` command line: subcommands, help, flag mapping, and one real launch."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from text2tracks import cli
from text2tracks.batching import ServeLimits

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("build-ids", "export", "serve")


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"text2tracks {command}" in capsys.readouterr().out


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    for argv in ([], ["fly"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_building_the_parser_loads_no_heavy_library():
    code = ("import sys; from text2tracks.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'faiss') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_serve_flags_map_onto_the_limits(monkeypatch):
    import text2tracks.serve

    seen = {}
    monkeypatch.setattr(text2tracks.serve, "serve", lambda artifact, **kw: seen.update(kw, artifact=artifact))
    assert cli.main(["serve", "--artifact", "A", "--port", "9001", "--max-k", "7",
                     "--max-wait-ms", "0.5", "--max-prompts", "3"]) == 0
    assert seen["artifact"] == "A" and seen["port"] == 9001 and seen["host"] == "127.0.0.1"
    assert seen["limits"] == ServeLimits(max_k=7, max_wait_ms=0.5, max_prompts=3)
    with pytest.raises(SystemExit, match="max_k must be a positive integer"):
        cli.main(["serve", "--artifact", "A", "--max-k", "0"])


def test_serve_on_a_missing_artifact_says_so(tmp_path):
    with pytest.raises(SystemExit, match="text2tracks serve: no artifact folder"):
        cli.main(["serve", "--artifact", str(tmp_path / "none")])


def test_the_serve_command_answers_http(tmp_path):
    """The real launch: ``python -m text2tracks.cli serve`` on the tiny artifact, then HTTP."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from tiny_artifact import build_tiny_artifact

    artifact = build_tiny_artifact(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "text2tracks.cli", "serve", "--artifact",
                               str(artifact), "--port", str(port), "--device", "cpu",
                               "--log-level", "warning"], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "the server exited"
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "no answer from the server"
                time.sleep(0.2)
        assert health.json()["status"] == "ok"
        answer = httpx.post(f"http://127.0.0.1:{port}/recommend", timeout=60,
                            json={"prompt": "sad songs", "k": 3})
        assert answer.status_code == 200 and len(answer.json()["recommendations"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
