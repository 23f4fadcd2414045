"""Time one TagGAN training step (D step + penalty + G step + EMA) per backend.

Usage:
    python benchmarks/train_step.py [--recipe recipes/getchu-paper.yaml] [--steps 5]
        [--batch-size 64] [--backends tensorflow,jax,torch] [--peer PEER_DIR]
        [--out benchmarks/results/train_step.json]

Each backend runs in its own process (Keras picks its backend at import). The first step
(tracing / compilation) is reported apart; the figure is the median of the timed steps.

An entry of `--backends` may carry its own recipe overrides in brackets, separated by `;`,
to compare settings in one run, e.g. XLA on and off on TensorFlow:
    --backends "tensorflow[training.jit_compile=false],tensorflow[training.jit_compile=true]"
Results are keyed by the entry; `ratios` gives each entry's step time over the first's, and
`steps_per_hour` what one hour of each buys.

`--peer ../shared/peers/create-girls-moe-pytorch` also times the PyTorch reproduction of the
paper, through its own `run.sh` (`venv prepare time`: its D step with the DRAGAN penalty, G
step and data loading, 128 px, batch 64, the same number of threads as this machine's cores),
in the same run after the backends; `speedup_over_peer` is then the peer's step time over each
entry's (above 1: kanime is faster). The peer only has the paper model at batch 64.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from results_io import write_result
from worker import run_worker

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
import keras, numpy as np
from kanime.recipe import load_recipe
from kanime.training.fit import build_gan

recipe_path, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
recipe = load_recipe(recipe_path, [f"training.batch_size={batch}", *sys.argv[4:]])
gan = build_gan(recipe)
r = recipe.model.resolution
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (batch * (steps + 1), r, r, 3)).astype("float32")
tags = recipe.vocabulary.sample(len(images), rng)
times = []

class Timer(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        float(logs["d_loss"])  # wait for the step to finish (JAX dispatches asynchronously)
        times.append(time.perf_counter() - self.start)

gan.fit(images, tags, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=[Timer()])
extra = {}
if keras.backend.backend() == "jax":
    # XLA's count of the compiled step's floating-point operations, and peak device memory.
    import jax
    state = gan._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                               optimizer_variables=True, metrics_variables=True)
    cost = jax.jit(gan.train_step).lower(state, (images[:batch], tags[:batch])).compile()
    cost = cost.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    extra["xla_flops_per_step"] = float(cost.get("flops", 0.0))
    extra["device"] = str(jax.devices()[0].device_kind)
    stats = jax.devices()[0].memory_stats() or {}
    extra["peak_device_bytes"] = stats.get("peak_bytes_in_use")
print("RESULT" + json.dumps({
    **extra,
    "backend": keras.backend.backend(),
    "generator_params": gan.generator.count_params(),
    "discriminator_params": gan.discriminator.count_params(),
    "first_step_s": times[0],
    "step_s": times[1:],
}))
"""


def run(backend, recipe, batch, steps, overrides=()):
    result = run_worker(WORKER, backend, [recipe, batch, steps, *overrides], cwd=ROOT)
    result["median_step_s"] = statistics.median(result["step_s"])
    result["images_per_s"] = batch / result["median_step_s"]
    return result


def run_peer(peer_dir, work):
    """The peer's own timing (`run.sh venv prepare time`): its `timing.json` as a dict."""
    env = {**os.environ, "WORK": str(work), "THREADS": str(os.cpu_count())}
    steps = ["venv", "prepare", "time"]
    if (Path(work) / "pkl").exists():  # prepared by an earlier run
        steps.remove("prepare")
    proc = subprocess.run(["bash", str(Path(peer_dir) / "run.sh"), *steps], env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"the peer failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    timing = json.loads((Path(work) / "time128" / "timing.json").read_text())
    return {**timing, "median_step_s": timing["median_s_per_iter"], "run_sh": steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/getchu-paper.yaml")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--peer", help="the peer's folder (with run.sh) to time after kanime")
    parser.add_argument("--peer-work", default="/tmp/peer", help="the peer's WORK folder")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="recipe override, e.g. training.mixed_precision=mixed_bfloat16 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    results = {}
    for entry in re.findall(r"[^,\[]+(?:\[[^\]]*\])?", args.backends):
        backend, _, extra = entry.partition("[")
        overrides = [*args.set, *filter(None, extra.rstrip("]").split(";"))]
        start = time.time()
        results[entry] = run(backend, args.recipe, args.batch_size, args.steps, overrides)
        print(f"{entry}: median {results[entry]['median_step_s']:.2f} s/step "
              f"({time.time() - start:.0f} s in all)", flush=True)  # fmt: skip
    if args.peer:
        start = time.time()
        results["peer"] = run_peer(args.peer, args.peer_work)
        print(f"peer: median {results['peer']['median_step_s']:.2f} s/step "
              f"({time.time() - start:.0f} s in all)", flush=True)  # fmt: skip
    first = next(iter(results.values()))["median_step_s"]
    ratios = {k: v["median_step_s"] / first for k, v in results.items()}
    steps_per_hour = {k: 3600 / v["median_step_s"] for k, v in results.items()}
    report = {
        "what": "one TagGAN training step (D step with DRAGAN penalty, G step, EMA)",
        "recipe": args.recipe,
        "batch_size": args.batch_size,
        "timed_steps": args.steps,
        "overrides": args.set,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },  # fmt: skip
        "command": "python " + " ".join(sys.argv),
        "results": results,
        "ratios": ratios,
        "steps_per_hour": steps_per_hour,
    }
    if "peer" in results:
        peer = results["peer"]["median_step_s"]
        report["speedup_over_peer"] = {
            k: peer / v["median_step_s"] for k, v in results.items() if k != "peer"
        }
    write_result(args.out, report)


if __name__ == "__main__":
    main()
