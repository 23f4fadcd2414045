"""Count the floating-point operations of one TagGAN training step and of each model's forward pass.

Usage:
    KERAS_BACKEND=jax python benchmarks/train_flops.py [--recipe recipes/getchu-paper.yaml]
        [--batch-size 64] [--out benchmarks/results/train_flops.json]

The step count is XLA's cost analysis of the compiled JAX train step on the CPU, where
convolutions stay XLA operations (on a GPU they become cuDNN calls that the analysis does
not count). The forward counts add up 2 x multiply-adds of every Conv2D and Dense layer.
"""

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flops import forward_flops  # noqa: E402
from results_io import write_result  # noqa: E402

from kanime.recipe import load_recipe  # noqa: E402
from kanime.training.fit import build_gan  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/getchu-paper.yaml")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/results/train_flops.json")
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, [f"training.batch_size={args.batch_size}"])
    gan = build_gan(recipe)
    r, b = recipe.model.resolution, args.batch_size
    images = np.zeros((b, r, r, 3), "float32")
    tags = recipe.vocabulary.sample(b, np.random.default_rng(0))
    gan.fit(images, tags, batch_size=b, epochs=1, verbose=0)  # builds every variable
    state = gan._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                               optimizer_variables=True, metrics_variables=True)  # fmt: skip
    cost = jax.jit(gan.train_step).lower(state, (images, tags)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    step = float(cost["flops"])
    g, d = forward_flops(gan.generator), forward_flops(gan.discriminator)
    report = {
        "what": "floating-point operations of one training step and of the forward passes",
        "recipe": args.recipe,
        "batch_size": b,
        "command": "python " + " ".join(sys.argv),
        "xla_flops_per_step": step,
        "xla_flops_per_image": step / b,
        "generator_forward_flops_per_image": g,
        "discriminator_forward_flops_per_image": d,
        "step_over_forward_g_plus_d": step / b / (g + d),
    }
    for k, v in report.items():
        print(f"{k}: {v:.4g}" if isinstance(v, float | int) else f"{k}: {v}")
    write_result(args.out, report)


if __name__ == "__main__":
    main()
