"""text2tracks: prompt-based recommendation by generative retrieval over semantic IDs.

The public face::

    from text2tracks import Text2Tracks, Recommendation

    recommender = Text2Tracks.from_pretrained("runs/demo/artifact")
    recommender.recommend("chill 90s jazz", k=5)

The names are imported on first use (PEP 562), so ``import text2tracks`` stays cheap: it loads
neither torch nor transformers, and the item-side commands never pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "Text2Tracks": "text2tracks.pipeline",
    "Recommendation": "text2tracks.recommendation",
    "ArtifactError": "text2tracks.artifacts",
}

__all__ = ["ArtifactError", "Recommendation", "Text2Tracks", "__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; never run
    from text2tracks.artifacts import ArtifactError
    from text2tracks.pipeline import Text2Tracks
    from text2tracks.recommendation import Recommendation


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'text2tracks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
