"""A run's logs: `logs/metrics.jsonl` (one JSON row per logged step) and TensorBoard events.

A run killed between two backups has logged steps that its resumed run trains
and logs again. Before resuming, `drop_logs_after(run_dir, backup_step)`
removes those rows and events, so that each step appears once in both.

Examples:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp())
    >>> (run / "logs").mkdir()
    >>> rows = "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\\n" for s in (2, 4, 6))
    >>> _ = metrics_path(run).write_text(rows)
    >>> drop_metrics_after(run, 4)
    >>> [row["step"] for row in read_metrics(run)]
    [2, 4]
"""

import json
from pathlib import Path

from kanime.atomic import atomic_path


def metrics_path(run_dir) -> Path:
    """`run_dir/logs/metrics.jsonl`."""
    return Path(run_dir) / "logs" / "metrics.jsonl"


def read_metrics(run_dir) -> list[dict]:
    """The rows of the run's `metrics.jsonl` (none when it has no such file)."""
    path = metrics_path(run_dir)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(run_dir, step: int, values: dict) -> None:
    """Appends the row `{"step": step, **values}`."""
    with open(metrics_path(run_dir), "a") as f:
        f.write(json.dumps({"step": step, **values}) + "\n")


def drop_logs_after(run_dir, step: int) -> None:
    """Drops the `metrics.jsonl` rows and the TensorBoard events past `step`."""
    drop_metrics_after(run_dir, step)
    drop_events_after(run_dir, step)


def drop_metrics_after(run_dir, step: int) -> None:
    """Drops the rows past `step`, rewriting the file atomically (only if it has any)."""
    rows = read_metrics(run_dir)
    if any(row["step"] > step for row in rows):
        text = "".join(json.dumps(row) + "\n" for row in rows if row["step"] <= step)
        with atomic_path(metrics_path(run_dir)) as tmp:
            Path(tmp).write_text(text)


def drop_events_after(run_dir, step: int) -> None:
    """Drops the events past `step` from the run's TensorBoard event files.

    Each file holding such events is rewritten atomically without them (the
    records are copied as they are). A file cut short by a killed process keeps
    its whole records. Without TensorFlow no event files are written
    (`kanime.run.callbacks.SummaryWriter`), and none are read.
    """
    paths = sorted((Path(run_dir) / "logs").glob("events.out.tfevents.*"))
    if not paths:
        return  # a new run, or one trained without TensorFlow: nothing to read
    try:
        import tensorflow as tf
        from tensorflow.core.util import event_pb2
    except ImportError:
        return
    for path in paths:
        records = []
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                records.append(record.numpy())
        except tf.errors.DataLossError:
            pass  # a last record the killed run did not finish
        keep = [r for r in records if event_pb2.Event.FromString(r).step <= step]
        if len(keep) < len(records):
            with atomic_path(path) as tmp, tf.io.TFRecordWriter(tmp) as writer:
                for record in keep:
                    writer.write(record)
