"""Shared test helpers: tiny recipes and subprocess runners."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"num_images": 64},
    "model": {
        "resolution": 32,
        "generator": {"channels": 8, "num_blocks": 1, "upsample_channels": 32},
        "discriminator": {"channels": 8, "blocks_per_stage": 1},
    },
    "training": {"batch_size": 8, "steps": 8, "ema_half_life_images": 64},
    "logging": {
        "log_every": 2,
        "image_every": 4,
        "backup_every": 2,
        "export_every": 4,
        "grid_size": 2,
    },
}


def write_recipe(path, **sections):
    """Writes the tiny recipe with `sections` merged in; returns its path."""
    recipe = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            recipe[key] = {**recipe.get(key, {}), **value}
        else:
            recipe[key] = value
    path = Path(path)
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture
def tiny_recipe(tmp_path):
    return write_recipe(tmp_path / "tiny.yaml")


# Prepended to subprocess code: makes `import tensorflow` fail, as on a machine without it.
BLOCK_TENSORFLOW = """
import importlib.abc, sys

class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, NoTensorFlow())
"""


def interrupt_after_epoch(monkeypatch, monitor, epoch):
    """Makes `monitor.on_epoch_end` raise `KeyboardInterrupt` once it has logged `epoch`, as
    when a run is killed between two backups; returns the original method."""
    logged = monitor.on_epoch_end

    def interrupted(self, e, logs=None):
        logged(self, e, logs)
        if e == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(monitor, "on_epoch_end", interrupted)
    return logged


def run_python(code, backend="tensorflow", env=None, timeout=600, cwd=None):
    """Runs `code` in a fresh interpreter with `KERAS_BACKEND=backend`; returns the result."""
    full_env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"subprocess failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
        )
    return result
