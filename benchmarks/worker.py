"""Runs a benchmark's worker code in a fresh process on one Keras backend; shared by the scripts."""

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_worker(code, backend, args=(), cwd=None, label=None):
    """The dict a `python -c code *args` process prints on its `RESULT{json}` line.

    The process runs with `KERAS_BACKEND=backend`, TensorFlow's C++ logs off and this folder
    on `PYTHONPATH` (so the worker can import `flops`).

    Raises:
        SystemExit: the process failed; the message names `label` (default: the backend) and
            ends with its standard error.
    """
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"{label or backend} failed:\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])
