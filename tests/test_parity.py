"""One training step from identical weights, data and noise: TensorFlow and JAX agree."""

import json

import numpy as np
import pytest
from conftest import run_python

STEP = """
import json, sys
import keras, numpy as np
from kanime.models import Discriminator, Generator
from kanime.training import TagGAN

folder = sys.argv[1] if len(sys.argv) > 1 else {folder!r}
init = np.load(folder + "/init.npz")
g = Generator(32, channels=8, num_blocks=1, upsample_channels=32)
d = Discriminator(32, channels=8, blocks_per_stage=1)
g.set_weights([init[f"g{{i}}"] for i in range(len(g.weights))])
d.set_weights([init[f"d{{i}}"] for i in range(len(d.weights))])
gan = TagGAN(g, d, ema_half_life_images=100.0)
noise = {{k: keras.ops.convert_to_tensor(init[k]) for k in ("z", "fake_tags", "u", "alpha")}}
gan.draw = lambda images, tags: noise
gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
history = gan.fit(init["images"], init["tags"], batch_size=8, epochs=1, shuffle=False, verbose=0)
np.savez(folder + "/" + keras.backend.backend() + ".npz",
         *[np.asarray(w) for w in g.weights + d.weights + gan.ema_generator.weights])
print("LOSSES" + json.dumps({{k: float(v[0]) for k, v in history.history.items()}}))
"""


@pytest.mark.large
def test_one_step_gives_the_same_losses_and_weights_on_tensorflow_and_jax(tmp_path):
    from kanime.models import Discriminator, Generator
    from kanime.tags import PAPER_TAGS

    rng = np.random.default_rng(0)
    g = Generator(32, channels=8, num_blocks=1, upsample_channels=32)
    d = Discriminator(32, channels=8, blocks_per_stage=1)
    arrays = {f"g{i}": np.asarray(w) for i, w in enumerate(g.weights)}
    arrays.update({f"d{i}": np.asarray(w) for i, w in enumerate(d.weights)})
    arrays.update(
        images=rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32"),
        tags=PAPER_TAGS.sample(8, rng),
        z=rng.standard_normal((8, 128)).astype("float32"),
        fake_tags=PAPER_TAGS.sample(8, rng),
        u=rng.random((8, 32, 32, 3)).astype("float32"),
        alpha=rng.random((8, 1, 1, 1)).astype("float32"),
    )
    np.savez(tmp_path / "init.npz", **arrays)
    code = STEP.format(folder=str(tmp_path))
    losses = {}
    for backend in ("tensorflow", "jax"):
        out = run_python(code, backend=backend).stdout
        line = next(x for x in out.splitlines() if x.startswith("LOSSES"))
        losses[backend] = json.loads(line[len("LOSSES") :])
    tf_losses, jax_losses = losses["tensorflow"], losses["jax"]
    assert set(tf_losses) == set(jax_losses)
    for name in tf_losses:
        assert jax_losses[name] == pytest.approx(tf_losses[name], rel=1e-4, abs=1e-5), name
    a = np.load(tmp_path / "tensorflow.npz")
    b = np.load(tmp_path / "jax.npz")
    assert len(a.files) == len(b.files)
    for key in a.files:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-3, atol=2e-5, err_msg=key)
    # The step did move the weights.
    moved = [not np.allclose(a[f"arr_{i}"], arrays[f"g{i}"]) for i in range(len(g.weights))]
    assert any(moved)
