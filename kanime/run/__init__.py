"""What every training job shares: the run folder, its logs, backups and callbacks.

- `kanime.run.layout`: `RunFolder`, the one place that names a run's files;
- `kanime.run.checkpoint`: the resume state, written atomically;
- `kanime.run.metrics_log`: `logs/metrics.jsonl`, trimmed to the backup on resume;
- `kanime.run.callbacks`: `RunMonitor` (logs, NaN and divergence guard, backups),
  `ProgressBar` and the errors a stopped run raises.

The GAN (`kanime.training`) and the tagger (`kanime.tagger`) both build on it.
"""

from kanime.run.layout import RunFolder

__all__ = ["RunFolder"]
