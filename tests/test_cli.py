"""The ``text2tracks`` command line: subcommands, help, flag spellings, the one flag <-> config
mapper, and one real launch."""

from __future__ import annotations

import argparse
import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval import benchmark
from eval import cli as full_cli
from semantic_ids.cf import CFConfig
from text2tracks import cli
from text2tracks.batching import ServeLimits
from text2tracks.commands import build_ids, export, fit_seed_blend
from text2tracks.config_flags import HIDDEN_ALIASES, config_from_args, config_to_argv
from text2tracks.modeling import ModelConfig
from training import demo, train_diffusion, train_seq2seq
from training.train_diffusion import DiffusionTrainConfig
from training.train_seq2seq import TrainConfig

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("build-ids", "fit-seed-blend", "export", "serve")
ALL_COMMANDS = (
    "build-ids",
    "train",
    "train-diffusion",
    "fit-seed-blend",
    "evaluate",
    "export",
    "serve",
    "demo",
)
# the parsers behind `python -m` / `accelerate launch -m`, which must show the same help
STANDALONE = {
    "build-ids": None,
    "train": train_seq2seq.build_parser,
    "train-diffusion": train_diffusion.build_parser,
    "fit-seed-blend": lambda: fit_seed_blend.add_parser(None),
    "evaluate": benchmark.build_parser,
    "export": lambda: export.add_parser(None),
    "serve": None,
    "demo": lambda: demo.add_parser(None),
}


def _exit_code(main, argv) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_help_lists_every_subcommand(capsys):
    assert _exit_code(cli.main, ["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert _exit_code(full_cli.main, ["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALL_COMMANDS)


def test_the_console_script_is_the_full_command():
    pyproject = (REPO / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    assert scripts.strip() == 'text2tracks = "eval.cli:main"'
    assert [name for name, _ in full_cli.STAGES] == list(ALL_COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_has_help(command, capsys):
    assert _exit_code(cli.main, [command, "--help"]) == 0
    assert f"text2tracks {command}" in capsys.readouterr().out


def _example_lines(help_text: str) -> list[str]:
    assert "examples:" in help_text
    return help_text.split("examples:", 1)[1].splitlines()


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_stage_has_help_with_an_example(command, capsys):
    assert _exit_code(full_cli.main, [command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: text2tracks {command} ")
    examples = _example_lines(out)
    assert any(line.strip().startswith(f"text2tracks {command}") for line in examples), examples
    for alias in ("--train ", "--budget-minutes", "--minutes", "--beams", "--quiet"):
        assert alias not in out, f"the old spelling {alias} is hidden"
    standalone = STANDALONE[command]
    if standalone is not None:  # python -m / accelerate launch -m: the same examples
        assert _example_lines(standalone().format_help()) == examples


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    for main in (cli.main, full_cli.main):
        for argv in ([], ["fly"]):
            assert _exit_code(main, argv) == 2
        assert "invalid choice: 'fly'" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["text2tracks.cli", "eval.cli"])
def test_building_the_parser_loads_no_heavy_library(module):
    code = (
        f"import sys; from {module} import build_parser; build_parser(); "
        "heavy = [m for m in ('torch', 'transformers', 'fastapi', 'faiss') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_grouped_forward_is_model_code_with_the_old_name_kept():
    from text2tracks.training_step import grouped_forward

    assert train_seq2seq.grouped_forward is grouped_forward


# ------------------------------------------------------------------------------ spellings


def _capture(monkeypatch, module, name):
    """Replace ``module.name`` by a recorder; returns the list of (args, kwargs) of its calls."""
    calls = []

    def record(*args, **kwargs):
        calls.append((args, kwargs))
        return {}

    monkeypatch.setattr(module, name, record)
    return calls


def test_train_old_and_new_spellings_give_one_config(monkeypatch):
    calls = _capture(monkeypatch, train_seq2seq, "train")
    base = ["train", "--artifact", "a", "--playlists", "p"]
    for extra in (
        ["--max-minutes", "2.5", "--num-beams", "30", "--no-progress"],
        ["--minutes", "2.5", "--beams", "30", "--quiet"],
        ["--budget-minutes", "2.5", "--num-beams", "30", "--quiet"],
    ):
        assert full_cli.main([*base, *extra]) == 0
    configs = [args[0] for args, _ in calls]
    assert (
        configs[0]
        == configs[1]
        == configs[2]
        == TrainConfig(artifact="a", playlists="p", max_minutes=2.5, num_beams=30, progress=False)
    )
    # python -m training.train_seq2seq reads the same flags
    args = train_seq2seq.build_parser().parse_args(
        [*base[1:], "--minutes", "2.5", "--beams", "30", "--quiet"]
    )
    assert train_seq2seq.config_from_args(args) == configs[0]


def test_train_diffusion_old_and_new_spellings_give_one_config(monkeypatch):
    calls = _capture(monkeypatch, train_diffusion, "train")
    base = ["train-diffusion", "--artifact", "a", "--playlists", "p", "--encoder", "bytes"]
    assert full_cli.main([*base, "--max-minutes", "3", "--no-progress"]) == 0
    assert full_cli.main([*base, "--minutes", "3", "--quiet"]) == 0
    assert (
        calls[0][0][0]
        == calls[1][0][0]
        == DiffusionTrainConfig(
            artifact="a", playlists="p", encoder="bytes", max_minutes=3.0, progress=False
        )
    )


def test_build_ids_old_and_new_spellings(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(build_ids, "format_stats_table", lambda stats: "")
    monkeypatch.setattr(
        build_ids, "run_build_ids", lambda *a, **kw: calls.append((a, kw)) or {"stats": {}}
    )
    assert (
        full_cli.main(
            [
                "build-ids",
                "--playlists",
                "p",
                "--artifact",
                "A",
                "--no-progress",
                "--levels",
                "2",
                "--factors",
                "8",
                "--cf-model",
                "bpr",
                "--seed",
                "3",
                "--no-normalize-input",
            ]
        )
        == 0
    )
    assert (
        full_cli.main(
            [
                "build-ids",
                "--playlists",
                "p",
                "--out",
                "A",
                "--quiet",
                "--levels",
                "2",
                "--factors",
                "8",
                "--cf-model",
                "bpr",
                "--seed",
                "3",
                "--no-normalize-input",
            ]
        )
        == 0
    )
    (new_args, new_kw), (old_args, old_kw) = calls
    new_kw.pop("log"), old_kw.pop("log")
    assert new_args == old_args and new_kw == old_kw
    assert new_args[:2] == ("p", "A") and new_kw["show_progress"] is False
    assert new_args[2] == build_ids.BuildIDsConfig(
        n_levels=2, normalize_input=False, seed=3, cf=CFConfig(model="bpr", factors=8, seed=3)
    )
    # either spelling of a required flag will do, but not both, and not neither
    assert (
        _exit_code(
            full_cli.main, ["build-ids", "--playlists", "p", "--out", "A", "--artifact", "B"]
        )
        == 2
    )
    assert _exit_code(full_cli.main, ["build-ids", "--playlists", "p"]) == 2
    assert "one of the arguments --artifact is required" in capsys.readouterr().err


def test_evaluate_keeps_the_published_command_and_passes_training_flags_on(monkeypatch):
    calls = _capture(monkeypatch, benchmark, "run")
    monkeypatch.setattr(benchmark, "_markdown", lambda results, k: "")
    published = ["--train", "../shared/data/mpd", "--out", "D", "--budget-minutes", "60"]
    canonical = ["--playlists", "../shared/data/mpd", "--out", "D", "--max-minutes", "60"]
    assert benchmark.main(published) == 0
    assert full_cli.main(["evaluate", *canonical]) == 0
    assert (
        full_cli.main(
            [
                "evaluate",
                "--playlists",
                "a",
                "--test-playlists",
                "b",
                "--out",
                "D",
                "--num-beams",
                "30",
                "--d-model",
                "64",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        benchmark.main(
            [
                "--train",
                "a",
                "--test",
                "b",
                "--out",
                "D",
                "--beams",
                "30",
                "--d-model",
                "64",
                "--no-progress",
            ]
        )
        == 0
    )
    (old, old_train), (new, new_train), (a, a_train), (b, b_train) = [args for args, _ in calls]
    # run() reads the same names as before, and results.json records the flags only
    assert vars(old) == vars(new) and old_train == new_train == []
    assert (old.train, old.test, old.budget_minutes, old.beams) == (
        "../shared/data/mpd",
        None,
        60.0,
        None,
    )
    assert vars(a) == vars(b) and (a.train, a.test, a.beams) == ("a", "b", 30)
    assert a_train == b_train == ["--d-model", "64", "--no-progress"]
    assert not {"func", "command"} & set(vars(a))


def test_unknown_flags_are_an_error_outside_evaluate(capsys):
    assert (
        _exit_code(full_cli.main, ["train", "--artifact", "a", "--playlists", "p", "--bogus", "1"])
        == 2
    )
    assert "unrecognized arguments: --bogus 1" in capsys.readouterr().err


def test_demo_and_export_spellings(monkeypatch):
    calls = _capture(monkeypatch, demo, "run_demo")
    assert full_cli.main(["demo", "--out", "o", "--max-minutes", "1", "--no-progress"]) == 0
    assert demo.main(["--out", "o", "--minutes", "1", "--quiet"]) == 0
    assert (
        calls[0]
        == calls[1]
        == (("o", "small"), {"force": False, "max_minutes": 1.0, "progress": False})
    )
    parser = argparse.ArgumentParser()
    export.add_parser(parser.add_subparsers(dest="command"))
    base = ["export", "--artifact", "A", "--input", "i.txt", "--output", "o.csv"]
    new = parser.parse_args([*base, "--num-beams", "30", "--no-progress"])
    old = parser.parse_args([*base, "--beams", "30", "--quiet"])
    assert vars(new) == vars(old) and (new.num_beams, new.progress) == (30, False)


def test_the_alias_table_names_only_hidden_old_spellings():
    for canonical, aliases in HIDDEN_ALIASES.items():
        assert canonical.startswith("--") and canonical not in aliases


# ------------------------------------------------------------------------------ the mapper


def _changed(config, **skip):
    """``config`` with every field given a value other than its default (nested ones too)."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        choices = f.metadata.get("choices")
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(value):
            values[f.name] = _changed(value, **skip)
        elif choices:
            values[f.name] = next(c for c in choices if c != value)
        elif isinstance(value, bool):
            values[f.name] = not value
        elif isinstance(value, int):
            values[f.name] = value + 1
        elif isinstance(value, float):
            values[f.name] = value + 0.25 if value < 0.5 else value / 2
        elif isinstance(value, tuple):
            values[f.name] = (*value, "o")
    return dataclasses.replace(config, **values)


ROUND_TRIPS = {
    "TrainConfig": (
        train_seq2seq.build_parser,
        TrainConfig,
        TrainConfig(
            artifact="a",
            playlists="p",
            resume="ckpt",
            checkpoint_dir="c",
            num_beams=40,
            model=ModelConfig(base="t5-small", tokenizer="bytes", lora=True),
        ),
    ),
    "DiffusionTrainConfig": (
        train_diffusion.build_parser,
        DiffusionTrainConfig,
        DiffusionTrainConfig(artifact="a", playlists="p", resume="latest"),
    ),
    "BuildIDsConfig": (
        None,
        build_ids.BuildIDsConfig,
        build_ids.BuildIDsConfig(balance=1.5, cf=CFConfig(model="bpr", weighting="tfidf")),
    ),
    "ServeLimits": (None, ServeLimits, ServeLimits()),
}


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = full_cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[command]


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_the_mapper_round_trips_each_config(name):
    build, cls, config = ROUND_TRIPS[name]
    command = {"BuildIDsConfig": "build-ids", "ServeLimits": "serve"}.get(name)
    parser = build() if build else _subparser(command)
    extra = {
        "BuildIDsConfig": ["--playlists", "p", "--artifact", "A"],
        "ServeLimits": ["--artifact", "A"],
    }.get(name, [])
    names = build_ids.CF_FLAG_NAMES if name == "BuildIDsConfig" else None
    if name == "BuildIDsConfig":  # --seed seeds CF and k-means: one value for both
        changes = [
            dataclasses.replace(
                _changed(config, seed=1),
                seed=7,
                cf=dataclasses.replace(_changed(config.cf), seed=7),
            )
        ]
    elif name == "TrainConfig":
        # d_model must stay a multiple of num_heads; seeds (seed_prob > 0) need the encoder to
        # train, so freeze_encoder keeps its default; subword dropout needs the subword T5,
        # which the change leaves, so it keeps its default too; artist prompts need the teacher,
        # which the change leaves, so they keep theirs; soft targets and the list loss (which
        # the change turns on) do not combine, so soft targets change on their own; the prompt
        # prior needs a seed prior (the change turns it off), so it changes on its own too, and
        # the count scale, learned prior factors, the prior's own factors, its fold-in start
        # its frozen weight and its list loss need seeds that read factors as well
        model = dataclasses.replace(
            _changed(config.model, d_model=1, num_heads=1, freeze_encoder=1),
            d_model=256,
            num_heads=8,
        )
        outer = _changed(
            config,
            d_model=1,
            num_heads=1,
            freeze_encoder=1,
            subword_dropout=1,
            artist_prompts=1,
            soft_target_weight=1,
            seed_prior_prompt=1,
            seed_prior_count_scale=1,
            seed_prior_learn_factors=1,
            seed_prior_dim=1,
            seed_prior_init=1,
            seed_prior_freeze_weight=1,
            seed_prior_list_weight=1,
        )
        changes = [
            dataclasses.replace(outer, model=model),
            dataclasses.replace(config, soft_target_weight=0.5),
            dataclasses.replace(  # a prior needs the ID-only output layer, which LoRA lacks
                config,
                model=dataclasses.replace(config.model, lora=False),
                seed_prior="auto",
                seed_prior_prompt=True,
            ),
            dataclasses.replace(
                config,
                model=dataclasses.replace(config.model, lora=False),
                seed_prob=0.5,
                seed_factors=True,
                seed_prior="auto",
                seed_prior_count_scale=True,
                seed_prior_learn_factors=True,
                seed_prior_dim=256,
                seed_prior_init="foldin",
                seed_prior_freeze_weight=True,
                seed_prior_list_weight=0.5,
            ),
        ]
    elif name == "DiffusionTrainConfig":
        # the time embedding width must stay even, the contrastive term (on by default) needs
        # an x_0 prediction type, and seed conditioning is refused with --regressor (which the
        # change turns on), so those three keep their defaults
        changes = [_changed(config, time_embed_dim=1, prediction_type=1, seed_conditioning=1)]
    else:
        changes = [_changed(config)]
    for value in (
        config,
        cls(
            **{
                f.name: getattr(config, f.name)
                for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            }
        ),
        *changes,
    ):
        args = parser.parse_args([*extra, *config_to_argv(value, names=names)])
        assert config_from_args(cls, args) == value


def test_every_field_is_one_flag_with_help():
    for build, cls, _ in ROUND_TRIPS.values():
        if build is None:
            continue
        parser = build()
        dests = {a.dest for a in parser._actions if a.dest != "help"}
        names = {f.name for f in dataclasses.fields(cls) if f.name != "model"}
        if cls is TrainConfig:
            names |= {f.name for f in dataclasses.fields(ModelConfig)}
        assert dests == names
        for action in parser._actions:
            if action.help is not argparse.SUPPRESS and action.dest != "help":
                assert action.help and not action.help.startswith("default:"), action.dest


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "--schedule", "sideways"],
            "argument --schedule: invalid choice: 'sideways' "
            "(choose from 'linear', 'cosine', 'constant')",
        ),
        (["train", "--tokenizer", "words"], "argument --tokenizer: invalid choice: 'words'"),
        (["train", "--batch-size", "many"], "argument --batch-size: invalid int value: 'many'"),
        (
            ["train-diffusion", "--fusion-kind", "mlp"],
            "argument --fusion-kind: invalid choice: 'mlp'",
        ),
        (
            ["build-ids", "--out", "A", "--cf-model", "svd"],
            "argument --cf-model: invalid choice: 'svd'",
        ),
    ],
)
def test_bad_choices_are_usage_errors(argv, message, capsys):
    needs = [] if argv[0] == "build-ids" else ["--artifact", "a"]
    assert _exit_code(full_cli.main, [argv[0], *needs, "--playlists", "p", *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert message in err and f"usage: text2tracks {argv[0]}" in err


def test_a_value_the_config_refuses_is_a_usage_error_before_any_work(monkeypatch, capsys):
    calls = _capture(monkeypatch, train_seq2seq, "train")
    assert (
        _exit_code(
            full_cli.main, ["train", "--artifact", "a", "--playlists", "p", "--batch-size", "0"]
        )
        == 2
    )
    assert (
        "text2tracks train: error: batch_size must be an integer >= 1, got 0"
        in capsys.readouterr().err
    )
    assert not calls


def test_serve_flags_map_onto_the_limits(monkeypatch):
    import text2tracks.serve

    seen = {}
    monkeypatch.setattr(
        text2tracks.serve, "serve", lambda artifact, **kw: seen.update(kw, artifact=artifact)
    )
    assert (
        cli.main(
            [
                "serve",
                "--artifact",
                "A",
                "--port",
                "9001",
                "--max-k",
                "7",
                "--max-wait-ms",
                "0.5",
                "--max-prompts",
                "3",
            ]
        )
        == 0
    )
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
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "text2tracks.cli",
            "serve",
            "--artifact",
            str(artifact),
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "warning",
        ],
        cwd=REPO,
    )
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
        answer = httpx.post(
            f"http://127.0.0.1:{port}/recommend", timeout=60, json={"prompt": "sad songs", "k": 3}
        )
        assert answer.status_code == 200 and len(answer.json()["recommendations"]) == 3
    finally:
        server.terminate()
        server.wait(timeout=30)
