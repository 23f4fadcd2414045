"""Evaluation: FID against real faces and the paper's per-tag precision table.

- `kanime.evaluation.fid`: InceptionV3 features, their statistics (real ones
  cached) and the Frechet distance;
- `kanime.evaluation.precision`: per-tag precision of generated faces and its
  ceiling on real faces;
- `kanime.evaluation.report`: `evaluate`, which runs both and writes
  `evaluation.json`, `evaluation.md` and `evaluation.png` (`kanime evaluate`);
- `kanime.evaluation.monitor`: the callback that evaluates during `kanime fit`.
"""

from kanime.evaluation.report import evaluate

__all__ = ["evaluate"]
