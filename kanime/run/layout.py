"""The run folder: where every file of a run lives, named in one place.

```
RUN/
  recipe.yaml               the resolved recipe; a resumed run must match it
  backup/state.weights.h5   the resume state (`kanime.run.checkpoint`)
  logs/metrics.jsonl        one JSON row per logged step (`kanime.run.metrics_log`)
  logs/events.out.tfevents.*  the same values and the sample grids, for TensorBoard
  samples/step-0000250.png  sample grids (a GAN run)
  generator.keras           the EMA generator, exported as it trains (a GAN run)
  discriminator.keras
  tagger.keras, settings.json, evaluation.json   (a tagger run)
  evaluation/               what `kanime evaluate` writes for this run
```
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder; nothing is created until a file is written.

    Args:
        root: the run folder.

    Examples:
        >>> run = RunFolder("runs/quickstart")
        >>> run.backup.as_posix(), run.sample(250).name
        ('runs/quickstart/backup/state.weights.h5', 'step-0000250.png')
    """

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def backup(self) -> Path:
        return self.root / "backup" / "state.weights.h5"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def metrics(self) -> Path:
        return self.logs / "metrics.jsonl"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def sample(self, step: int) -> Path:
        """The sample grid written at `step`."""
        return self.samples / f"step-{step:07d}.png"

    @property
    def generator(self) -> Path:
        return self.root / "generator.keras"

    @property
    def discriminator(self) -> Path:
        return self.root / "discriminator.keras"

    @property
    def tagger(self) -> Path:
        return self.root / "tagger.keras"

    @property
    def tagger_settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def tagger_evaluation(self) -> Path:
        return self.root / "evaluation.json"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"


__all__ = ["RunFolder"]
