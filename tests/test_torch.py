"""The PyTorch backend: `kanime fit` trains, resumes and exports on `KERAS_BACKEND=torch`,
and the exported generator draws the same faces on TensorFlow. (The one-step parity with
TensorFlow and JAX is in test_parity.py.)"""

import importlib.util
import json

import keras
import numpy as np
import pytest
from conftest import run_python, write_recipe

# find_spec, not an import: torch is never loaded into this TensorFlow process.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
)

FIT = """
import json, sys
from kanime.training.fit import fit
result = fit(sys.argv[1], run_dir=sys.argv[2], overrides=sys.argv[3:], progress=False)
print("RESULT" + json.dumps({"step": result.step, "resumed_from": result.resumed_from,
                             "losses": {k: float(v) for k, v in result.losses.items()}}))
"""

DRAW = """
import sys
import keras, numpy as np
import kanime.models
g = keras.saving.load_model(sys.argv[1], compile=False)
rng = np.random.default_rng(0)
z = rng.standard_normal((4, 128)).astype("float32")
tags = np.zeros((4, 34), "float32"); tags[:, 0] = 1
np.save(sys.argv[2], np.asarray(g.predict([z, tags], verbose=0)))
"""


def _fit(recipe, run_dir, *overrides):
    code = f"import sys; sys.argv = {['-', str(recipe), str(run_dir), *overrides]!r}\n" + FIT
    out = run_python(code, backend="torch").stdout
    return json.loads(next(x for x in out.splitlines() if x.startswith("RESULT"))[6:])


@pytest.mark.large
def test_fit_resumes_and_exports_a_generator_that_tensorflow_loads(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    first = _fit(recipe, run_dir, "training.steps=4")
    assert first["step"] == 4 and first["resumed_from"] == 0
    assert all(np.isfinite(v) for v in first["losses"].values()), first
    assert (run_dir / "backup" / "state.weights.h5").exists()

    second = _fit(recipe, run_dir, "training.steps=8")
    assert second["resumed_from"] == 4 and second["step"] == 8
    rows = [json.loads(x) for x in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]  # the run went on, not from step 0

    argv = ["-", str(run_dir / "generator.keras"), str(tmp_path / "torch.npy")]
    run_python(f"import sys; sys.argv = {argv!r}\n" + DRAW, backend="torch")
    import kanime.models  # noqa: F401  (registers the layers for this process's loader)

    g = keras.saving.load_model(run_dir / "generator.keras", compile=False)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((4, 128)).astype("float32")
    tags = np.zeros((4, 34), "float32")
    tags[:, 0] = 1
    here = np.asarray(g.predict([z, tags], verbose=0))
    np.testing.assert_allclose(np.load(tmp_path / "torch.npy"), here, atol=1e-4)


def test_torch_compile_is_refused_with_a_reason(tmp_path):
    code = """
import keras
from kanime.models import Discriminator, Generator
from kanime.training import TagGAN
gan = TagGAN(Generator(32, channels=8, num_blocks=1, upsample_channels=32),
             Discriminator(32, channels=8, blocks_per_stage=1))
try:
    gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam(), jit_compile=True)
except ValueError as e:
    print("REFUSED", e)
"""
    out = run_python(code, backend="torch").stdout
    assert "REFUSED" in out and "torch.compile" in out and "double backward" in out
