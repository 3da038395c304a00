"""Checkpoint folders shared by the training scripts: ``ROOT/checkpoint-STEP/`` with a state file."""

from __future__ import annotations

import os
from pathlib import Path

STATE_NAME = "trainer_state.json"


def list_checkpoints(root: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``root`` (those with a state file), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith("checkpoint-") and (p / STATE_NAME).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_resume(resume: str | None, root: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: ``None``, ``"latest"`` (newest under ``root``), a
    checkpoint folder, or a folder of checkpoints (its newest)."""
    if resume is None:
        return None
    path = Path(root) if resume == "latest" else Path(resume)
    if (path / STATE_NAME).is_file():
        return path
    found = list_checkpoints(path)
    if not found:
        raise FileNotFoundError(f"--resume {resume}: no checkpoint in {path}")
    return found[-1]
