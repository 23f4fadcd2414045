"""Exports that load with plain Keras, in any process, on any backend."""

import keras

from kanime.atomic import atomic_path


def plain_functional(model, name=None):
    """The same layers and weights as a plain functional `keras.Model`.

    kanime's model classes only add a constructor and a config; the layers
    inside are built-in Keras layers. Re-wrapping them drops the kanime class,
    so the saved file needs no `import kanime` to load.
    """
    return keras.Model(model.inputs, model.outputs, name=name or model.name)


def save_model_atomic(model, path):
    """Saves `model` to the `.keras` file `path`; a reader never sees half a file."""
    with atomic_path(path, suffix=".keras") as tmp:
        plain_functional(model).save(tmp)
