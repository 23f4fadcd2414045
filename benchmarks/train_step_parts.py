"""One TagGAN training step split into its parts, on TensorFlow, JAX or PyTorch.

Usage:
    [KERAS_BACKEND=jax|torch] python benchmarks/train_step_parts.py
        [--recipe recipes/getchu-paper.yaml] [--batch-size 64] [--runs 3]
        [--out benchmarks/results/train_step_parts.json]

The backend is Keras's (`KERAS_BACKEND`, TensorFlow when unset).

Times, each compiled on its own (a `tf.function` on TensorFlow, `jax.jit` on JAX; eager on
PyTorch, as `kanime fit` runs it there) on the same
batch and draws: the discriminator step without the DRAGAN penalty, the discriminator step
with it (the penalty's cost is the difference), the generator step and the EMA update. These
are the functions the backend's `train_step` is made of. The first call of each (tracing,
compiling) is left out; figures are medians of `--runs` calls.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from results_io import write_result  # noqa: E402

from kanime.recipe import load_recipe  # noqa: E402
from kanime.training.fit import build_gan  # noqa: E402


def tensorflow_parts(gan, images, tags):
    import tensorflow as tf

    from kanime.training.backends import tensorflow as steps

    images, tags = tf.constant(images), tf.constant(tags)
    noise = gan.draw(images, tags)
    b = images.shape[0]
    parts = {
        "discriminator_step_without_penalty": tf.function(
            lambda: steps.discriminator_step(gan, images, tags, noise, penalty=False)
        ),
        "discriminator_step": tf.function(
            lambda: steps.discriminator_step(gan, images, tags, noise)
        ),
        "generator_step": tf.function(lambda: steps.generator_step(gan, noise)),
        "ema_update": tf.function(lambda: gan.update_ema(b)),
    }

    def finish(out):
        if out is not None:
            tf.nest.map_structure(lambda x: x.numpy(), out)

    return parts, finish


def jax_parts(gan, images, tags):
    import jax

    from kanime.training.backends import jax as steps

    G, D = gan.generator, gan.discriminator
    values = lambda variables: [v.value for v in variables]  # noqa: E731
    g_values = (values(G.trainable_variables), values(G.non_trainable_variables))
    d_values = (values(D.trainable_variables), values(D.non_trainable_variables))
    g_opt, d_opt = values(gan.g_optimizer.variables), values(gan.d_optimizer.variables)
    fixed = gan.non_trainable_variables
    fixed_values = values(fixed)
    noise = gan.draw(images, tags)
    b = images.shape[0]

    def d_step(penalty):
        return jax.jit(
            lambda g, d, o: steps.discriminator_step(gan, g, d, o, images, tags, noise, penalty)
        )

    d_plain, d_full = d_step(False), d_step(True)
    g_step = jax.jit(lambda g, d, o: steps.generator_step(gan, g, d, o, noise))
    ema = jax.jit(lambda g, f: steps.ema_step(gan, g, fixed, f, b))
    parts = {
        "discriminator_step_without_penalty": lambda: d_plain(g_values, d_values, d_opt),
        "discriminator_step": lambda: d_full(g_values, d_values, d_opt),
        "generator_step": lambda: g_step(g_values, d_values, g_opt),
        "ema_update": lambda: ema(g_values, fixed_values),
    }
    return parts, jax.block_until_ready


def torch_parts(gan, images, tags):
    import torch

    from kanime.training.backends import torch as steps

    images, tags = torch.as_tensor(images), torch.as_tensor(tags)
    with torch.no_grad():
        noise = gan.draw(images, tags)
    b = images.shape[0]

    def ema():
        with torch.no_grad():
            gan.update_ema(b)

    parts = {
        "discriminator_step_without_penalty": lambda: steps.discriminator_step(
            gan, images, tags, noise, penalty=False
        ),
        "discriminator_step": lambda: steps.discriminator_step(gan, images, tags, noise),
        "generator_step": lambda: steps.generator_step(gan, noise),
        "ema_update": ema,
    }
    return parts, lambda out: None  # eager: each call has finished when it returns


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/getchu-paper.yaml")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/train_step_parts.json")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, [f"training.batch_size={args.batch_size}"])
    gan = build_gan(recipe)
    r, b = recipe.model.resolution, args.batch_size
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (b, r, r, 3)).astype("float32")
    tags = recipe.vocabulary.sample(b, rng)
    backend = keras.backend.backend()
    make = {"tensorflow": tensorflow_parts, "jax": jax_parts, "torch": torch_parts}[backend]
    parts, finish = make(gan, images, tags)
    results = {}
    for name, fn in parts.items():
        start = time.perf_counter()
        finish(fn())  # trace / compile
        first = time.perf_counter() - start
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            finish(fn())
            times.append(time.perf_counter() - start)
        results[name] = {"median_s": statistics.median(times), "times_s": times, "first_s": first}
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
        "what": f"one training step split into parts ({backend}, each compiled alone)",
        "backend": backend,
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
