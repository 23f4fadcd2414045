"""Mixed precision: bfloat16 / float16 compute, float32 weights, losses and penalty."""

import json

import numpy as np
import pytest
from conftest import TINY, run_python

from kanime.recipe import recipe_from_dict
from kanime.training.fit import build_gan

# One training step of the tiny recipe's model on a fixed batch, from the same weights,
# under a dtype policy; prints the step's losses as JSON.
ONE_STEP = """
import json, sys
import keras, numpy as np
from kanime.recipe import recipe_from_dict
from kanime.training.fit import build_gan

def losses(raw, policy):
    raw = {**raw, "training": {**raw["training"], "mixed_precision": policy}}
    recipe = recipe_from_dict(raw)
    keras.utils.set_random_seed(0)
    gan = build_gan(recipe)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
    tags = recipe.vocabulary.sample(8, rng)
    logs = gan.fit(images, tags, batch_size=8, epochs=1, verbose=0).history
    return {k: float(v[-1]) for k, v in logs.items()}

raw = json.loads(sys.argv[1]) if len(sys.argv) > 1 else RAW
print("LOSSES" + json.dumps({p: losses(raw, p) for p in POLICIES}))
"""


def step_losses(backend, policies):
    code = f"RAW = {json.dumps(TINY)!r}\nRAW = __import__('json').loads(RAW)\n"
    code += f"POLICIES = {list(policies)!r}\n" + ONE_STEP
    out = run_python(code, backend=backend).stdout
    line = next(x for x in out.splitlines() if x.startswith("LOSSES"))
    return json.loads(line[len("LOSSES") :])


def assert_close_to_float32(results, policy):
    reference, mixed = results[None], results[policy]
    assert set(mixed) == set(reference)
    for name, value in mixed.items():
        assert np.isfinite(value), (policy, name, value)
        # bfloat16 keeps 8 bits of mantissa: about 1% per operation.
        assert value == pytest.approx(reference[name], rel=0.1, abs=0.05), (policy, name)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_mixed_precision_step_is_finite_and_close_to_float32(backend):
    results = step_losses(backend, [None, "mixed_bfloat16", "mixed_float16"])
    results = {None if k == "null" else k: v for k, v in results.items()}
    assert_close_to_float32(results, "mixed_bfloat16")
    assert_close_to_float32(results, "mixed_float16")


def test_mixed_policies_compute_in_half_and_keep_float32_weights():
    raw = {**TINY, "training": {**TINY["training"], "mixed_precision": "mixed_float16"}}
    gan = build_gan(recipe_from_dict(raw))
    conv = next(layer for layer in gan.discriminator.layers if "conv" in layer.name)
    assert conv.compute_dtype == "float16" and conv.variable_dtype == "float32"
    assert all(v.dtype == "float32" for v in gan.generator.trainable_variables)
    assert type(gan.g_optimizer).__name__ == "LossScaleOptimizer"
    assert type(gan.d_optimizer).__name__ == "LossScaleOptimizer"
    bf16 = build_gan(
        recipe_from_dict(
            {**TINY, "training": {**TINY["training"], "mixed_precision": "mixed_bfloat16"}}
        )
    )
    conv = next(layer for layer in bf16.generator.layers if "conv" in layer.name)
    assert conv.compute_dtype == "bfloat16"
    # The images and the logits come out in float32, for the losses and the penalty.
    assert bf16.generator.get_layer("images").compute_dtype == "float32"
    assert bf16.discriminator.get_layer("logit").compute_dtype == "float32"
    assert type(bf16.g_optimizer).__name__ == "Adam"  # bfloat16 needs no loss scaling
    # Building a mixed model leaves the global policy as it was.
    import keras

    assert keras.config.dtype_policy().name == "float32"
