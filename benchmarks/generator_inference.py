"""Generator inference time per 128x128 image at batch 1 and batch 64, per backend.

Usage:
    python benchmarks/generator_inference.py [--runs 30] [--backends tensorflow,jax]
        [--out benchmarks/results/generator_inference.json]

The paper-size generator (`kanime.models.Generator(resolution=128)`, random weights) runs
through `predict_on_batch` (the compiled predict function) in a fresh process per backend;
after 3 warm-up calls, the figure is the median of `--runs` calls.
"""

import argparse
import json
import os
import platform
import subprocess
import sys

from results_io import write_result

WORKER = r"""
import json, statistics, sys, time
import keras, numpy as np
from kanime.models import Generator

runs = int(sys.argv[1])
g = Generator(resolution=128)
out = {"backend": keras.backend.backend(), "params": g.count_params()}
for batch in (1, 64):
    z = np.random.default_rng(0).standard_normal((batch, 128)).astype("float32")
    tags = np.zeros((batch, 34), "float32")
    for _ in range(3):
        np.asarray(g.predict_on_batch([z, tags]))
    times = []
    for _ in range(runs if batch == 1 else max(3, runs // 6)):
        start = time.perf_counter()
        np.asarray(g.predict_on_batch([z, tags]))
        times.append(time.perf_counter() - start)
    out[f"batch_{batch}"] = {
        "median_ms_per_call": statistics.median(times) * 1e3,
        "median_ms_per_image": statistics.median(times) * 1e3 / batch,
        "times_s": times,
    }
print("RESULT" + json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--out", default="benchmarks/results/generator_inference.json")
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(args.runs)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if proc.returncode:
            raise SystemExit(f"{backend} failed:\n{proc.stderr[-3000:]}")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
        results[backend] = json.loads(line[len("RESULT") :])
        one, many = (results[backend][f"batch_{b}"]["median_ms_per_image"] for b in (1, 64))
        print(f"{backend}: {one:.1f} ms/image at batch 1, {many:.1f} at batch 64", flush=True)
    report = {
        "what": "paper-size 128x128 generator inference per image (predict_on_batch)",
        "target_ms_per_image_at_batch_1": 20,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_after": os.getloadavg(),
        "command": "python " + " ".join(sys.argv),
        "results": results,
    }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
