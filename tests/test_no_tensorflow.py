"""kanime's models and training run on JAX with TensorFlow made unimportable."""

import pytest
from conftest import BLOCK_TENSORFLOW, run_python


@pytest.mark.large
def test_models_taggan_and_a_jax_step_without_tensorflow(tmp_path):
    code = (
        BLOCK_TENSORFLOW
        + f"""
import keras, numpy as np
import kanime
from kanime.models import Discriminator, Generator
from kanime.tags import PAPER_TAGS
from kanime.training import TagGAN
from kanime.training.fit import fit

try:
    import tensorflow
    raise SystemExit("tensorflow imported")
except ImportError:
    pass

gan = TagGAN(
    Generator(32, channels=8, num_blocks=1, upsample_channels=32),
    Discriminator(32, channels=8, blocks_per_stage=1),
)
gan.compile(keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5))
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
history = gan.fit(images, PAPER_TAGS.sample(8, rng), batch_size=8, epochs=1, verbose=0)
assert gan.step == 1
assert all(np.isfinite(v[0]) for v in history.history.values())

# The whole fit job too, from numpy batches (TensorBoard logs switch off).
import warnings
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    result = fit({str(tmp_path / "recipe.yaml")!r}, run_dir={str(tmp_path / "run")!r},
                 progress=False)
assert result.step == 4, result
assert not [m for m in sys.modules if m.startswith("tensorflow")]
print("ok", keras.backend.backend())
"""
    )
    import yaml
    from conftest import TINY

    recipe = {**TINY, "training": {**TINY["training"], "steps": 4}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    out = run_python("import sys\n" + code, backend="jax").stdout
    assert "ok jax" in out
