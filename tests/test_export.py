"""``text2tracks export``: input and output formats, bad rows, resume after a crash, two processes.

The artifact is the tiny one of ``test_pipeline.py`` (demo data, build-ids, an untrained T5).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_artifact import build_tiny_artifact

from text2tracks.commands.export import (
    ExportError,
    add_parser,
    existing_journals,
    journal_path,
    read_input,
    run_export,
)
from text2tracks.pipeline import Text2Tracks

PROMPTS = [
    "chill 90s jazz",
    "sad songs",
    "workout hip hop",
    "oldies for slow dancing",
    "happy country 🤠",
    "night drive",
    "Relaxing Folk",
    "rock n roll 70s",
    "ｆｕｌｌ ｗｉｄｔｈ",
    "r&b, soul",
    "EDM",
    "acoustic folk for rainy days",
    "🎷",
    "80s rock",
    "calm",
    "pop hits",
]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_tiny_artifact(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def recommender(artifact) -> Text2Tracks:
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def export(recommender, artifact, input_path, output_path, **kwargs):
    kwargs.setdefault("k", 5)
    kwargs.setdefault("batch_size", 4)
    return run_export(
        artifact, input_path, output_path, progress=False, recommender=recommender, **kwargs
    )


def read_output(path: Path) -> list[dict]:
    """Any output format -> list of dicts with the same fields and Python types."""
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            for name in ("track_ids", "scores", "names", "artists"):
                row[name] = json.loads(row[name])
            row["error"] = row["error"] or None
            row["prompt"] = row["prompt"] or None
        return rows
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def write_jsonl(path: Path, prompts: list[str]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "prompt": p}, ensure_ascii=False) + "\n"
            for i, p in enumerate(prompts)
        ),
        encoding="utf-8",
    )
    return path


def _strip(records, keep_id=True):
    return [{k: v for k, v in r.items() if keep_id or k != "id"} for r in records]


# ------------------------------------------------------------------------------ formats


def test_every_input_format_gives_the_same_recommendations(recommender, artifact, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    with open(tmp_path / "in.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt"])
        writer.writerows([f"q{i}", p] for i, p in enumerate(PROMPTS))
    pq.write_table(
        pa.table({"id": [f"q{i}" for i in range(len(PROMPTS))], "prompt": PROMPTS}),
        tmp_path / "in.parquet",
    )
    (tmp_path / "in.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")

    outputs = {}
    for name in ("in.jsonl", "in.csv", "in.parquet", "in.txt"):
        out = tmp_path / f"out-{name}.jsonl"
        summary = export(recommender, artifact, tmp_path / name, out)
        assert (summary.n_rows, summary.n_done, summary.n_failed) == (len(PROMPTS), len(PROMPTS), 0)
        outputs[name] = read_output(out)
    reference = outputs["in.jsonl"]
    assert [r["id"] for r in reference] == [f"q{i}" for i in range(len(PROMPTS))]
    assert [r["prompt"] for r in reference] == PROMPTS
    assert [r["id"] for r in outputs["in.txt"]] == [f"line:{i + 1}" for i in range(len(PROMPTS))]
    for name, records in outputs.items():
        assert _strip(records, keep_id=name != "in.txt") == _strip(
            reference, keep_id=name != "in.txt"
        )
    # and what the API says
    answers = recommender.recommend(PROMPTS[:4], k=5)
    for record, recs in zip(reference, answers, strict=False):
        assert record["track_ids"] == [r.track_id for r in recs]
        assert record["names"] == [r.name for r in recs]
        assert record["scores"] == pytest.approx([r.score for r in recs], abs=1e-4)
    assert not existing_journals(tmp_path / "out-in.jsonl.jsonl")


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_output_format_holds_the_same_records(recommender, artifact, tmp_path, suffix):
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS[:6] + [""])
    reference = tmp_path / "ref.jsonl"
    export(recommender, artifact, source, reference)
    out = tmp_path / f"out{suffix}"
    export(recommender, artifact, source, out)
    got, want = read_output(out), read_output(reference)
    assert len(got) == 7 and got[-1]["error"] and got[-1]["track_ids"] == []
    for g, w in zip(got, want, strict=True):
        assert (g["prompt"] or None) == (w["prompt"] or None)  # CSV cannot tell "" from null
        assert {k: g[k] for k in ("id", "track_ids", "names", "artists", "error")} == {
            k: w[k] for k in ("id", "track_ids", "names", "artists", "error")
        }
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-6)


def test_unknown_extensions_and_missing_columns(recommender, artifact, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS[:2])
    with pytest.raises(ExportError, match="unknown extension '.xlsx'"):
        export(recommender, artifact, source, tmp_path / "out.xlsx")
    (tmp_path / "in.xml").write_text("<x/>")
    with pytest.raises(ExportError, match="unknown extension '.xml'"):
        export(recommender, artifact, tmp_path / "in.xml", tmp_path / "out.jsonl")
    (tmp_path / "bad.csv").write_text("id,text\n1,chill\n")
    with pytest.raises(ExportError, match="no 'prompt' column"):
        export(recommender, artifact, tmp_path / "bad.csv", tmp_path / "out.jsonl")
    with pytest.raises(ExportError, match="does not exist"):
        export(recommender, artifact, tmp_path / "none.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(ExportError, match="larger than the catalogue"):
        export(recommender, artifact, source, tmp_path / "out.jsonl", k=len(recommender) + 1)


# ------------------------------------------------------------------------------ bad rows


def test_bad_rows_become_error_records_and_the_job_goes_on(recommender, artifact, tmp_path):
    lines = [
        json.dumps({"id": "ok1", "prompt": "chill 90s jazz"}).encode(),
        b'{"id": "broken", "prompt": ',  # malformed JSON
        json.dumps({"id": "noprompt"}).encode(),  # no prompt
        json.dumps({"id": "blank", "prompt": "   "}).encode(),  # empty prompt
        b"",  # blank line: not a row
        b'{"id": "bytes", "prompt": "caf\xe9"}',  # Latin-1 byte, not UTF-8
        json.dumps({"id": "num", "prompt": 7}).encode(),  # not a string
        json.dumps(["a", "list"]).encode(),  # not an object
        json.dumps({"prompt": "sad songs"}).encode(),  # no id: line:9
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    summary = export(recommender, artifact, source, out)
    records = read_output(out)
    assert [r["id"] for r in records] == [
        "ok1",
        "line:2",
        "noprompt",
        "blank",
        "bytes",
        "num",
        "line:8",
        "line:9",
    ]
    errors = {r["id"]: r["error"] for r in records}
    assert errors["ok1"] is None and errors["line:9"] is None
    assert "malformed JSON" in errors["line:2"] and "line 2" in errors["line:2"]
    assert "no prompt" in errors["noprompt"]
    assert "empty prompt" in errors["blank"]
    assert "undecodable bytes" in errors["bytes"] and "line 6" in errors["bytes"]
    assert "must be a string" in errors["num"]
    assert "expected a JSON object" in errors["line:8"]
    assert all(len(r["track_ids"]) == 5 for r in records if r["error"] is None)
    assert (summary.n_rows, summary.n_done, summary.n_failed, summary.n_blank) == (8, 2, 6, 1)
    assert len(summary.failures) == 6


def test_bad_rows_in_csv_text_and_parquet(recommender, artifact, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in.csv").write_bytes(b"id,prompt\n1,chill\n2,\n3,caf\xe9\n4\n,sad songs\n")
    summary = export(recommender, artifact, tmp_path / "in.csv", tmp_path / "csv.jsonl")
    records = read_output(tmp_path / "csv.jsonl")
    assert [r["id"] for r in records] == ["1", "2", "3", "4", "row:5"]
    assert [r["error"] is None for r in records] == [True, False, False, False, True]
    assert "undecodable" in records[2]["error"] and "no prompt" in records[3]["error"]
    assert (summary.n_done, summary.n_failed) == (2, 3)

    (tmp_path / "in.txt").write_bytes(b"chill\n\n\xff\xfe\nsad songs\r\n")
    summary = export(recommender, artifact, tmp_path / "in.txt", tmp_path / "txt.jsonl")
    records = read_output(tmp_path / "txt.jsonl")
    assert [r["id"] for r in records] == ["line:1", "line:3", "line:4"]
    assert (
        records[1]["error"].startswith("line 3: undecodable")
        and records[2]["prompt"] == "sad songs"
    )
    assert (summary.n_done, summary.n_failed, summary.n_blank) == (2, 1, 1)

    pq.write_table(pa.table({"prompt": ["chill", None, "", "sad"]}), tmp_path / "in.parquet")
    summary = export(recommender, artifact, tmp_path / "in.parquet", tmp_path / "pq.jsonl")
    assert [r["error"] is None for r in read_output(tmp_path / "pq.jsonl")] == [
        True,
        False,
        False,
        True,
    ]
    assert (summary.n_done, summary.n_failed) == (2, 2)


def test_long_prompts_are_truncated_and_counted(recommender, artifact, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", ["chill jazz " * 30, "sad songs"])
    summary = export(recommender, artifact, source, tmp_path / "out.jsonl")
    assert (summary.n_done, summary.n_truncated) == (2, 1)


# ------------------------------------------------------------------------------ crash safety


class Crash(RuntimeError):
    pass


def _crash_after(n_batches):
    def hook(done):
        if done >= n_batches:
            raise Crash(f"simulated crash after {done} batches")

    return hook


def test_resume_after_a_crash_gives_every_row_once(recommender, artifact, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS + ["", "jazz"])
    reference = tmp_path / "reference.jsonl"
    export(recommender, artifact, source, reference, batch_size=3)

    out = tmp_path / "out.jsonl"
    with pytest.raises(Crash):
        export(recommender, artifact, source, out, batch_size=3, after_batch=_crash_after(2))
    assert not out.exists()
    journal = journal_path(out)
    assert journal.exists()
    # the crash also cut a line in half
    with open(journal, "ab") as f:
        f.write(b'{"row": 13, "id": "q13", "track_')
    with pytest.raises(ExportError, match="--resume"):
        export(recommender, artifact, source, out, batch_size=3)
    with pytest.raises(Crash):  # crash again while resuming
        export(
            recommender,
            artifact,
            source,
            out,
            batch_size=3,
            resume=True,
            after_batch=_crash_after(1),
        )
    summary = export(recommender, artifact, source, out, batch_size=3, resume=True)
    assert summary.n_resumed > 0
    assert (summary.n_rows, summary.n_done, summary.n_failed) == (18, 17, 1)
    assert out.read_bytes() == reference.read_bytes()
    assert not existing_journals(out)
    # nothing left to resume
    assert export(recommender, artifact, source, out, resume=True).n_done == 0
    assert out.read_bytes() == reference.read_bytes()


def test_resume_with_other_settings_is_refused(recommender, artifact, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS)
    out = tmp_path / "out.csv"
    with pytest.raises(Crash):
        export(recommender, artifact, source, out, after_batch=_crash_after(1))
    with pytest.raises(ExportError, match="k=5.*now 7"):
        export(recommender, artifact, source, out, k=7, resume=True)
    write_jsonl(source, PROMPTS[:-1])
    with pytest.raises(ExportError, match="n_rows"):
        export(recommender, artifact, source, out, resume=True)


def _export_cmd(artifact, source, out, *extra):
    return [
        sys.executable,
        "-m",
        "text2tracks.commands.export",
        "--artifact",
        str(artifact),
        "--input",
        str(source),
        "--output",
        str(out),
        "--k",
        "5",
        "--batch-size",
        "2",
        "--no-progress",
        *extra,
    ]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@pytest.mark.slow
def test_sigkill_mid_run_then_resume(artifact, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS * 4)
    reference = tmp_path / "reference.jsonl"  # uninterrupted, in the same kind of process
    subprocess.run(
        _export_cmd(artifact, source, reference),
        env=_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    out = tmp_path / "out.jsonl"
    journal = journal_path(out)
    proc = subprocess.Popen(
        _export_cmd(artifact, source, out),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 6:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and journal.exists()
    done = subprocess.run(
        _export_cmd(artifact, source, out, "--resume"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "taken from the journal" in done.stderr
    assert out.read_bytes() == reference.read_bytes()


@pytest.mark.slow
def test_two_processes_equal_one(artifact, tmp_path):
    """``accelerate launch --multi_gpu --num_processes 2`` on a machine without CUDA: two CPU
    processes in a gloo group, each taking every other row."""
    source = write_jsonl(tmp_path / "in.jsonl", PROMPTS + [""] + PROMPTS[:5])
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    single = subprocess.run(
        _export_cmd(artifact, source, one), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert single.returncode == 0, single.stderr
    if torch.cuda.is_available():
        pytest.skip("this test runs the CPU processes of a machine without CUDA")
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        *_export_cmd(artifact, source, two)[1:],
    ]
    double = subprocess.run(launch, env=_env(), capture_output=True, text=True, timeout=120)
    assert double.returncode == 0, double.stderr
    assert "on 2 process(es)" in double.stderr
    a, b = read_output(one), read_output(two)
    assert len(a) == len(PROMPTS) + 6 and a[len(PROMPTS)]["error"]
    assert [r["id"] for r in a] == [r["id"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "scores"} == {
            k: v for k, v in y.items() if k != "scores"
        }
        assert x["scores"] == pytest.approx(y["scores"], abs=1e-4)


# ------------------------------------------------------------------------------ command line


def test_the_subcommand_is_registered():
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "export",
            "--artifact",
            "A",
            "--input",
            "i.txt",
            "--output",
            "o.csv",
            "--k",
            "20",
            "--batch-size",
            "8",
            "--resume",
            "--num-beams",
            "30",
            "--mode",
            "generative",
        ]
    )
    assert (args.k, args.batch_size, args.resume, args.num_beams) == (20, 8, True, 30)
    assert callable(args.func)


def test_a_fallback_id_never_collides_with_a_real_one(tmp_path):
    # issue 11: malformed JSON on line 3 and {"id": 3} on line 4 both came out as "3"
    (tmp_path / "in.jsonl").write_text(
        '{"id": "a", "prompt": "x"}\n{"id": "line:3", "prompt": "y"}\n{"id": 3, "prompt": \n'
        '{"id": 3, "prompt": "z"}\n{"prompt": "w"}\n',
        encoding="utf-8",
    )
    ids = [r.id for r in read_input(tmp_path / "in.jsonl").rows]
    assert ids == ["a", "line:3", "line:3~2", "3", "line:5"]
    assert len(set(ids)) == len(ids)
    (tmp_path / "bad.jsonl").write_text(
        '{"id": 1, "prompt": "x"}\n{"prompt": \n{"id": 2, "prompt": "y"}\n{"id": "line:2~2"}\n',
        encoding="utf-8",
    )
    rows = read_input(tmp_path / "bad.jsonl").rows
    assert [r.id for r in rows] == ["1", "line:2", "2", "line:2~2"]
    (tmp_path / "clash.jsonl").write_text(
        '{"prompt": \n{"id": 2, "prompt": "y"}\n{"id": "line:1", "prompt": "z"}\n', encoding="utf-8"
    )
    rows = read_input(tmp_path / "clash.jsonl").rows
    assert [r.id for r in rows] == ["line:1~2", "2", "line:1"]
    assert len({r.id for r in rows}) == len(rows)
    (tmp_path / "in.csv").write_text("id,prompt\n2,x\n,y\nrow:2,z\n", encoding="utf-8")
    assert [r.id for r in read_input(tmp_path / "in.csv").rows] == ["2", "row:2~2", "row:2"]


def test_read_input_numbers_rows_and_skips_blank_lines(tmp_path):
    (tmp_path / "in.txt").write_text("a\n\n  \nb\n", encoding="utf-8")
    source = read_input(tmp_path / "in.txt")
    assert [(r.index, r.id, r.prompt) for r in source.rows] == [
        (0, "line:1", "a"),
        (1, "line:4", "b"),
    ]
    assert source.n_blank == 2


# ------------------------------------------------------------------------------ negative prompts


def test_negative_prompt_is_read_from_every_format(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "in.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "prompt": "party", "negative_prompt": "rock"}),
                json.dumps({"id": "b", "prompt": "party"}),
                json.dumps({"id": "c", "prompt": "party", "negative_prompt": None}),
                json.dumps({"id": "d", "prompt": "party", "negative_prompt": ["rock"]}),
                json.dumps({"id": "e", "prompt": "party", "negative_prompt": ""}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    rows = read_input(tmp_path / "in.jsonl").rows
    assert [r.negative_prompt for r in rows[:3]] == ["rock", None, None]
    assert [r.error is None for r in rows] == [True, True, True, False, False]
    assert "negative_prompt must be a string, got list" in rows[3].error
    assert rows[3].prompt == "party" and "empty negative_prompt" in rows[4].error

    (tmp_path / "in.csv").write_text(
        "id,prompt,negative_prompt\n1,party,rock\n2,party,\n", encoding="utf-8"
    )
    rows = read_input(tmp_path / "in.csv").rows
    assert [(r.negative_prompt, r.error) for r in rows] == [("rock", None), (None, None)]

    pq.write_table(
        pa.table({"prompt": ["party", "party", "party"], "negative_prompt": ["rock", None, " "]}),
        tmp_path / "in.parquet",
    )
    rows = read_input(tmp_path / "in.parquet").rows
    assert [r.negative_prompt for r in rows[:2]] == ["rock", None]
    assert rows[2].error and "empty negative_prompt" in rows[2].error


def test_negative_prompt_in_generative_mode_fails_its_row_only(recommender, artifact, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "ok", "prompt": "sad songs"}),
                json.dumps({"id": "neg", "prompt": "sad songs", "negative_prompt": "jazz"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    summary = export(recommender, artifact, source, tmp_path / "out.jsonl")
    records = read_output(tmp_path / "out.jsonl")
    assert (summary.n_done, summary.n_failed) == (1, 1)
    assert records[0]["track_ids"] == [r.track_id for r in recommender.recommend("sad songs", k=5)]
    assert "negative_prompt need mode='latent' or mode='hybrid'" in records[1]["error"]
    with pytest.raises(ExportError, match="--n-samples need --mode latent or hybrid"):
        export(recommender, artifact, source, tmp_path / "o.jsonl", n_samples=3)
    with pytest.raises(ExportError, match="needs a diffusion head"):
        export(recommender, artifact, source, tmp_path / "o.jsonl", mode="latent")
    with pytest.raises(ExportError, match="--mode must be one of"):
        export(recommender, artifact, source, tmp_path / "o.jsonl", mode="magic")
    with pytest.raises(ExportError, match="--seed"):
        export(recommender, artifact, source, tmp_path / "o.jsonl", mode="latent", seed=-1)


def test_sampling_flags_are_parsed():
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "export",
            "--artifact",
            "A",
            "--input",
            "i.txt",
            "--output",
            "o.csv",
            "--mode",
            "hybrid",
            "--guidance-weight",
            "3.5",
            "--n-samples",
            "8",
            "--seed",
            "11",
        ]
    )
    assert (args.mode, args.guidance_weight, args.n_samples, args.seed) == ("hybrid", 3.5, 8, 11)
    defaults = parser.parse_args(["export", "--artifact", "A", "--input", "i", "--output", "o.csv"])
    assert (defaults.guidance_weight, defaults.n_samples, defaults.seed) == (None, None, 0)
