"""Wall time of the README's main job: `kanime fit recipes/quickstart.yaml`, start to finish.

Usage:
    python benchmarks/quickstart.py [--runs 1] [--out benchmarks/results/quickstart.json]

Runs the command as a user would (a fresh process, a fresh run folder each time) and records
the wall time of each run, the final losses and where the last sample grid is.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_result

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--keep", default=None, help="copy the last run folder here")
    parser.add_argument("--out", default="benchmarks/results/quickstart.json")
    args = parser.parse_args()
    kanime = Path(sys.executable).with_name("kanime")
    walls, losses = [], None
    for i in range(args.runs):
        run_dir = Path(tempfile.mkdtemp(prefix="kanime-quickstart-")) / "run"
        start = time.perf_counter()
        subprocess.run(
            [str(kanime), "fit", args.recipe, "--run-dir", str(run_dir), "--no-progress"],
            cwd=ROOT, check=True,
        )  # fmt: skip
        walls.append(time.perf_counter() - start)
        lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
        losses = json.loads(lines[-1])
        print(f"run {i}: {walls[-1]:.1f} s", flush=True)
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(run_dir, args.keep)
        shutil.rmtree(run_dir.parent)
    report = {
        "what": "wall time of `kanime fit recipes/quickstart.yaml` in a fresh process",
        "command": "python " + " ".join(sys.argv),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "wall_s": walls,
        "median_wall_s": statistics.median(walls),
        "final_logged_losses": losses,
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
