"""One TagGAN training step split into its parts, on TensorFlow.

Usage:
    python benchmarks/train_step_parts.py [--recipe recipes/getchu.yaml] [--batch-size 64]
        [--runs 3] [--out benchmarks/results/train_step_parts.json]

Times, each as its own `tf.function` on the same batch and draws: the discriminator
step without the DRAGAN penalty, the discriminator step with it (the penalty's cost is
the difference), the generator step and the EMA update. The first call of each
(tracing) is left out; figures are medians of `--runs` calls.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from results_io import write_result  # noqa: E402

from kanime.recipe import load_recipe  # noqa: E402
from kanime.training.backends import tensorflow as steps  # noqa: E402
from kanime.training.fit import build_gan  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/getchu.yaml")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/train_step_parts.json")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, [f"training.batch_size={args.batch_size}"])
    gan = build_gan(recipe)
    r, b = recipe.model.resolution, args.batch_size
    rng = np.random.default_rng(0)
    images = tf.constant(rng.uniform(-1, 1, (b, r, r, 3)).astype("float32"))
    tags = tf.constant(recipe.vocabulary.sample(b, rng))
    noise = gan.draw(images, tags)
    parts = {
        "discriminator_step_without_penalty": tf.function(
            lambda: steps.discriminator_step(gan, images, tags, noise, penalty=False)
        ),
        "discriminator_step": tf.function(
            lambda: steps.discriminator_step(gan, images, tags, noise)
        ),
        "generator_step": tf.function(lambda: steps.generator_step(gan, noise)),
        "ema_update": tf.function(lambda: steps.ema_step(gan, b)),
    }
    results = {}
    for name, fn in parts.items():
        fn()  # trace
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            out = fn()
            if out is not None:
                tf.nest.map_structure(lambda x: x.numpy(), out)
            times.append(time.perf_counter() - start)
        results[name] = {"median_s": statistics.median(times), "times_s": times}
        print(f"{name}: {results[name]['median_s']:.3f} s", flush=True)
    d, d0 = results["discriminator_step"]["median_s"], results[
        "discriminator_step_without_penalty"]["median_s"]  # fmt: skip
    g, e = results["generator_step"]["median_s"], results["ema_update"]["median_s"]
    total = d + g + e
    shares = {
        "discriminator_without_penalty": d0 / total,
        "penalty": (d - d0) / total,
        "generator": g / total,
        "ema": e / total,
    }
    print("shares: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    write_result(args.out, {
        "what": "one training step split into parts (TensorFlow, one tf.function per part)",
        "recipe": args.recipe,
        "batch_size": b,
        "machine": {"cpus": os.cpu_count(), "load_average_after": os.getloadavg()},
        "command": "python " + " ".join(sys.argv),
        "results": results,
        "sum_of_parts_s": total,
        "shares": shares,
    })  # fmt: skip


if __name__ == "__main__":
    main()
