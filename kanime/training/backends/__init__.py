"""Backend-specific gradient code of the train step, one module per backend.

As Keras does, the module is chosen once from `keras.backend.backend()`;
everything else in kanime is backend-neutral `keras.ops`.
"""

import importlib

import keras
from keras import ops

SUPPORTED = ("tensorflow", "jax", "torch")


def unpack(data):
    """`(images, tags)` of a training batch, as float32 tensors."""
    return ops.cast(data[0], "float32"), ops.cast(data[1], "float32")


def backend_module():
    """The train-step module of the running Keras backend."""
    name = keras.backend.backend()
    if name not in SUPPORTED:
        raise RuntimeError(
            f"kanime trains on the {' or '.join(SUPPORTED)} backend. "
            f"Received: KERAS_BACKEND={name!r}"
        )
    return importlib.import_module(f"kanime.training.backends.{name}")
