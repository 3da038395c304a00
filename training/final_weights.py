"""Which weights a training run ends with: an exponential moving average of its steps
(``--ema-decay``, :class:`WeightAverage`) and/or its best validation's (``--keep-best``,
:class:`BestWeights`).

A time-budgeted run decays its learning rate to 0 over the budget, and the diffusion head's
validation Hits@K moves by +-0.02 from one validation to the next, even late (three heads trained
on one recipe scored 0.280, 0.259 and 0.226 on the test split, the longest budget the lowest).
Averaging the weights over the last steps is the diffusion models' usual remedy (diffusers'
``EMAModel``, used here), and keeping the best validation's weights, as transformers'
``Trainer(load_best_model_at_end=True)`` does, makes the saved head the one validation preferred.
With both, validation scores the averaged weights and the best average is kept. On the
development data neither moved test latent-only Hits@10 (README "The diffusion head"), so both
are off by default.

:class:`BestWeights` is written by hand: the Trainer keeps the best model through its
checkpoints folder and the accelerate loop here has no such hook; a copy of a small model's state
in memory (CPU tensors) is cheaper than a checkpoint per validation. A checkpoint stores the copy
as safetensors next to the run's state (``best_weights.safetensors`` + ``best_weights.json``), so
a resumed run still knows its best.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

WEIGHTS_NAME = "best_weights.safetensors"
INFO_NAME = "best_weights.json"


class BestWeights:
    """The best score of ``metric`` seen so far, its step, its other scores and its weights.

    ``update`` after each validation; ``restore`` at the end loads the best weights into the model
    (a no-op when the last validation was the best). Ties keep the earlier step.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.step: int | None = None
        self.scores: dict[str, float] = {}
        self._state: dict[str, Any] | None = None

    @property
    def score(self) -> float | None:
        return self.scores.get(self.metric) if self.step is not None else None

    def update(self, model, scores: dict[str, float], step: int) -> bool:
        """Keep ``model``'s weights when ``scores[metric]`` beats the best so far; returns whether
        it did. Scores without the metric, or NaN (no validation prompts), are ignored."""
        value = scores.get(self.metric)
        if value is None or math.isnan(value) or (self.score is not None and value <= self.score):
            return False
        self.step, self.scores = int(step), dict(scores)
        self._state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def restore(self, model, current_step: int) -> bool:
        """Load the best weights into ``model`` unless they are the ones at ``current_step``;
        returns whether it loaded them."""
        if self._state is None or self.step == current_step:
            return False
        model.load_state_dict(self._state)
        return True

    def save(self, directory: str | Path) -> None:
        """Write the best weights and scores into ``directory`` (nothing before a validation)."""
        from safetensors.torch import save_file

        if self._state is None:
            return
        directory = Path(directory)
        # update already holds one private CPU copy per entry (tied weights no longer share
        # memory), so the copy is written as it is; safetensors only asks for contiguous tensors
        save_file({k: v.contiguous() for k, v in self._state.items()}, directory / WEIGHTS_NAME)
        info = {"metric": self.metric, "step": self.step, "scores": self.scores}
        (directory / INFO_NAME).write_text(json.dumps(info, indent=2), encoding="utf-8")

    def load(self, directory: str | Path) -> bool:
        """Read what :meth:`save` wrote into ``directory``; returns whether there was anything.
        A file for another metric is ignored (the run's config changed)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / INFO_NAME).is_file() or not (directory / WEIGHTS_NAME).is_file():
            return False
        info = json.loads((directory / INFO_NAME).read_text(encoding="utf-8"))
        if info.get("metric") != self.metric:
            return False
        self.step, self.scores = int(info["step"]), dict(info["scores"])
        self._state = load_file(str(directory / WEIGHTS_NAME))
        return True


class WeightAverage:
    """An exponential moving average of a model's trainable parameters (diffusers' ``EMAModel``:
    decay ``min(decay, (1 + step) / (10 + step))``, so a short run averages over its last
    ~step/9 steps and a long one over ~1 / (1 - decay)).

    ``step`` after each optimizer step; inside ``swapped_in()`` the model holds the average (for
    validation); ``copy_to_model`` makes the average the model's weights for good. The average
    is a checkpointed object (``state_dict`` / ``load_state_dict``:
    ``accelerator.register_for_checkpointing``).
    """

    def __init__(self, model, decay: float) -> None:
        from diffusers.training_utils import EMAModel

        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ema = EMAModel(self.params, decay=decay)

    @classmethod
    def registered(cls, accelerator, model, decay: float) -> WeightAverage | None:
        """The average of ``model``'s weights, registered for ``accelerator``'s checkpoints (so
        a resume loads it); None when ``decay`` is 0."""
        if not decay:
            return None
        average = cls(accelerator.unwrap_model(model), decay)
        accelerator.register_for_checkpointing(average)
        return average

    def step(self) -> None:
        self.ema.step(self.params)

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        self.ema.store(self.params)
        self.ema.copy_to(self.params)
        try:
            yield
        finally:
            self.ema.restore(self.params)

    def copy_to_model(self) -> None:
        self.ema.copy_to(self.params)

    def state_dict(self) -> dict[str, Any]:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema.load_state_dict(state)


def end_weights(average: WeightAverage | None, best: BestWeights | None, model, step: int, log):
    """Give ``model`` (unwrapped) the weights the run ends with: the moving average it
    validated, then the best validation's weights when they are not the last ones. Returns the
    best validation's scores when they were restored, else None."""
    if average is not None:
        average.copy_to_model()
    if best is not None and best.restore(model, step):
        log(f"restored the best validation's weights: step {best.step}, {best.scores}")
        return dict(best.scores)
    return None
