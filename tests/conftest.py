"""Fixtures shared by the test modules, and how the suite spreads over CPUs.

pyproject's ``addopts`` runs the suite under pytest-xdist (``-n auto``): one worker per CPU this
process may use, at most ``MAX_WORKERS``, each with its share of torch threads. ``-n 0`` runs it
in one process (to debug one test, or under a profiler).
"""

import os

import pytest
import torch

# Past a few workers the suite gains little: every worker builds its own module fixtures (tiny
# trained artifacts), and the slowest tests launch processes of their own.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: the CPUs this process may use (not the machine's), at most ``MAX_WORKERS``."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def _share_threads() -> None:
    """Inside an xdist worker, torch takes its share of the CPUs instead of all of them (two
    workers with two threads each on two cores only contend)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


_share_threads()

# The suite's models are tiny T5s built from a config: ``encoder="auto"`` (the default) would
# build the pretrained MiniLM wherever its optional package is installed (it is, with [dev]).
# Pinned here, for this process, its xdist workers and the CLI runs it starts; the tests of
# "auto" itself clear it (tests/test_minilm_encoder.py).
os.environ["TEXT2TRACKS_AUTO_ENCODER"] = "t5"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (tiny models: a second thread only adds overhead on
    a shared machine), restored afterwards. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
