"""Exports that load with plain Keras, in any process, on any backend."""

import os
import tempfile

import keras


def plain_functional(model, name=None):
    """The same layers and weights as a plain functional `keras.Model`.

    kanime's model classes only add a constructor and a config; the layers
    inside are built-in Keras layers. Re-wrapping them drops the kanime class,
    so the saved file needs no `import kanime` to load.
    """
    return keras.Model(model.inputs, model.outputs, name=name or model.name)


def save_model_atomic(model, path):
    """Saves `model` to the `.keras` file `path`; a reader never sees half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".keras")
    os.close(fd)
    try:
        plain_functional(model).save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
