"""The generator converted to TensorFlow Lite: the fastest way to run it on a CPU.

TensorFlow Lite runs a model's convolutions with XNNPACK's CPU kernels, which run
this generator's small maps much faster than XLA's: on a 2-core CPU, the paper's
128x128 generator takes 1.4 to 1.8 times less time per image this way than the same
fused model compiled by XLA, 18 to 21 ms (`benchmarks/generator_inference.py`;
`docs/generation.md` quotes the figures). The images are the same to float32 rounding.

`to_tflite(model)` converts a kanime generator in two steps:

1. `prepare_for_tflite` fuses it for inference (`kanime.inference.fused.fuse_generator`),
   with the final RGB convolution in its sub-pixel form, and lays it out for XNNPACK
   (each choice measured by `benchmarks/tflite_parts.py`):
   - the sub-pixel RGB convolution's 12 output channels are padded to 16, one zero
     channel after each RGB triple: XNNPACK makes 16 output channels faster than 12;
   - the model ends there, with the `tanh` applied to that half-resolution map.
     `TFLiteGenerator` does the last pixel shuffle and drops the fourth channel of
     each pixel in numpy, faster than TensorFlow Lite's reshapes and transposes would,
     while XNNPACK's `tanh` is faster than numpy's.
2. `keras_to_tflite` traces it once, with its weights as constants and the batch size
   open, and `tf.lite.TFLiteConverter` turns that into a TensorFlow Lite flat buffer.

`TFLiteGenerator` runs the result with `predict_on_batch([z, tags])`, as a Keras model
would. `kanime.inference.CharacterGenerator` uses it by default on a CPU with the
TensorFlow backend. Converting needs TensorFlow; the interpreter is LiteRT's
(`ai_edge_litert`) when that package is installed, else `tf.lite.Interpreter`.

Examples:
    >>> import numpy as np
    >>> from kanime.models import Generator
    >>> g = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
    ...               upsample_channels=16)
    >>> lite = TFLiteGenerator(to_tflite(g))
    >>> z = np.random.default_rng(0).standard_normal((2, 8)).astype("float32")
    >>> tags = np.zeros((2, 34), "float32")
    >>> images = lite.predict_on_batch([z, tags])
    >>> images.shape
    (2, 32, 32, 3)
    >>> bool(np.abs(images - np.asarray(g.predict_on_batch([z, tags]))).max() < 1e-4)
    True
"""

from __future__ import annotations

import os
import warnings

import keras
import numpy as np
from keras import layers

from kanime.inference.fused import fuse_generator
from kanime.models.validation import check_positive_int


def prepare_for_tflite(model) -> keras.Model:
    """The Keras model that `to_tflite` converts: fused, ending at a padded sub-pixel map.

    Args:
        model: a `kanime.models.Generator` or an exported `generator.keras`.

    Returns:
        A functional model `[z, tags] -> (n, r / 2, r / 2, 16)`, the images
        before their last pixel shuffle: channel `4 * (2 * i + j) + c` of a pixel
        is channel `c` of the image pixel at `(2 * y + i, 2 * x + j)`, for `c` in
        R, G, B and a fourth channel that is 0 (`images_from_subpixels` makes the
        images).

    Raises:
        kanime.inference.fused.NotFusableError: `model` is not laid out like
            `kanime.models.Generator`.
    """
    fused = fuse_generator(model, subpixel_rgb=True)
    weights = {}  # new layer -> its weights

    def clone(layer):  # a new layer with its weights, so the new model shares none
        values = layer.get_weights()
        if layer.name == "to_rgb":
            kernel, bias = values  # (k, k, C, 4 * 3): 4 sub-pixels of 3 channels
            kernel = np.pad(kernel.reshape(*kernel.shape[:3], 4, 3), [(0, 0)] * 4 + [(0, 1)])
            bias = np.pad(bias.reshape(4, 3), [(0, 0), (0, 1)])
            new = layers.Conv2D(16, kernel.shape[0], padding="same", name="to_rgb")
            values = [kernel.reshape(*kernel.shape[:3], 16), bias.reshape(16)]
        else:
            new = layer.__class__.from_config(layer.get_config())
        weights[new] = values
        return new

    to_rgb = keras.Model(fused.inputs, fused.get_layer("to_rgb").output)  # no last shuffle
    cloned = keras.models.clone_model(to_rgb, clone_function=clone)
    images = layers.Activation("tanh", name="images")(cloned.get_layer("to_rgb").output)
    out = keras.Model(cloned.inputs, images, name=f"{fused.name}_tflite")
    for layer, values in weights.items():
        layer.set_weights(values)
    return out


def to_tflite(model) -> bytes:
    """A kanime generator as a TensorFlow Lite flat buffer, of any batch size.

    Args:
        model: a `kanime.models.Generator` or an exported `generator.keras`.

    Returns:
        The `.tflite` file's bytes. Its inputs are named `z` and `tags`; its
        output is the padded sub-pixel map of `prepare_for_tflite`.

    Raises:
        kanime.inference.fused.NotFusableError: `model` is not laid out like
            `kanime.models.Generator`.
        ImportError: TensorFlow is not installed.
        ValueError: the Keras backend is not TensorFlow (the model is traced
            by TensorFlow).
    """
    return keras_to_tflite(prepare_for_tflite(model))


def keras_to_tflite(model) -> bytes:
    """Any Keras model `[z, tags] -> output` as a TensorFlow Lite flat buffer.

    The model is traced once with its weights as constants and the batch size
    open; the flat buffer's inputs are named `z` and `tags`.

    Raises:
        ImportError: TensorFlow is not installed.
        ValueError: the Keras backend is not TensorFlow.
    """
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "Converting to TensorFlow Lite traces the model with TensorFlow: it needs the "
            f"TensorFlow backend (KERAS_BACKEND=tensorflow). The backend is "
            f"{keras.backend.backend()!r}."
        )
    import tensorflow as tf

    trainable = [tf.constant(keras.ops.convert_to_numpy(v)) for v in model.trainable_variables]
    frozen = [tf.constant(keras.ops.convert_to_numpy(v)) for v in model.non_trainable_variables]
    z, tags = (
        tf.TensorSpec((None, *x.shape[1:]), tf.float32, name=name)
        for x, name in zip(model.inputs, ("z", "tags"))
    )

    @tf.function(autograph=False, input_signature=[z, tags])
    def generate(z, tags):
        output, _ = model.stateless_call(trainable, frozen, [z, tags], training=False)
        return output

    module = tf.Module()  # what holds the function; its weights are constants
    module.generate = generate
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [generate.get_concrete_function()], module
    )
    return converter.convert()


class TFLiteGenerator:
    """Runs a generator converted by `to_tflite`, like a Keras model's `predict_on_batch`.

    Not thread-safe: call it from one thread at a time.

    A batch of more than `max_batch` rows runs in slices of `max_batch`: per image,
    TensorFlow Lite is no faster on larger batches, while its intermediate maps (the
    Winograd convolutions' most of all) and the time to plan for a new batch size grow
    with the batch.

    Args:
        content: the bytes `to_tflite` returns (or a `.tflite` file's).
        num_threads: CPU threads of the interpreter (default: the cores this
            process may use).
        max_batch: the most rows the interpreter runs at once.

    Examples:
        >>> import numpy as np
        >>> from kanime.models import Generator
        >>> g = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
        ...               upsample_channels=16)
        >>> lite = TFLiteGenerator(to_tflite(g), num_threads=1)
        >>> lite.predict_on_batch([np.zeros((3, 8)), np.zeros((3, 34))]).shape
        (3, 32, 32, 3)
    """

    def __init__(self, content: bytes, num_threads: int | None = None, max_batch: int = 8):
        self.max_batch = check_positive_int("max_batch", max_batch)
        self.interpreter = _interpreter_class()(
            model_content=content, num_threads=num_threads or _cores()
        )
        inputs, outputs = {}, {}  # names -> tensor details, from the one signature
        if len(self.interpreter.get_signature_list()) == 1:
            runner = self.interpreter.get_signature_runner()
            inputs, outputs = runner.get_input_details(), runner.get_output_details()
        if set(inputs) != {"z", "tags"} or len(outputs) != 1:
            raise ValueError(
                f"Expected a generator made by `to_tflite`, with inputs `z` and `tags`. "
                f"Received inputs {sorted(inputs)}"
            )
        self._inputs = {name: inputs[name] for name in ("z", "tags")}
        (output,) = outputs.values()
        self._output = output["index"]
        self._batch_size = None

    def predict_on_batch(self, inputs) -> np.ndarray:
        """Images `(n, r, r, 3)` in [-1, 1] from `[z (n, latent_dim), tags (n, T)]`."""
        arrays = [np.ascontiguousarray(x, "float32") for x in inputs]
        for array, (name, detail) in zip(arrays, self._inputs.items()):
            if array.ndim != 2 or array.shape[1] != detail["shape"][1] or len(array) < 1:
                raise ValueError(
                    f"Expected `{name}` of shape (n, {detail['shape'][1]}) with n >= 1. "
                    f"Received: {array.shape}"
                )
        if len(arrays[0]) != len(arrays[1]):
            raise ValueError(
                f"`z` and `tags` must have as many rows. Received {len(arrays[0])} and "
                f"{len(arrays[1])}"
            )
        n, step = len(arrays[0]), self.max_batch
        if n > step:
            slices = [self._run([x[i : i + step] for x in arrays]) for i in range(0, n, step)]
            return np.concatenate(slices)
        return self._run(arrays)

    def _run(self, arrays):
        if len(arrays[0]) != self._batch_size:  # a new batch size: reshape, once
            for array, detail in zip(arrays, self._inputs.values()):
                self.interpreter.resize_tensor_input(detail["index"], array.shape)
            self.interpreter.allocate_tensors()
            self._batch_size = len(arrays[0])
        for array, detail in zip(arrays, self._inputs.values()):
            self.interpreter.set_tensor(detail["index"], array)
        self.interpreter.invoke()
        return images_from_subpixels(self.interpreter.get_tensor(self._output))


def images_from_subpixels(subpixels: np.ndarray) -> np.ndarray:
    """Images `(n, 2h, 2w, 3)` from the `(n, h, w, 16)` output of `prepare_for_tflite`.

    Examples:
        >>> subpixels = np.arange(16, dtype="float32").reshape(1, 1, 1, 16) / 10
        >>> images = images_from_subpixels(subpixels)
        >>> images.shape
        (1, 2, 2, 3)
        >>> images[0, :, :, 0]  # R of the 4 sub-pixels
        array([[0. , 0.4],
               [0.8, 1.2]], dtype=float32)
    """
    n, h, w, _ = subpixels.shape
    images = subpixels.reshape(n, h, w, 2, 2, 4).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(images.reshape(n, 2 * h, 2 * w, 4)[..., :3])


def tflite_available() -> bool:
    """Whether this process can convert (TensorFlow) and run TensorFlow Lite models."""
    try:
        _interpreter_class()
        import tensorflow as tf

        return hasattr(tf.lite, "TFLiteConverter")
    except (ImportError, AttributeError):
        return False


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        interpreter = tf.lite.Interpreter

        def Interpreter(**kwargs):  # noqa: N802 - stands in for the class
            with warnings.catch_warnings():  # "use ai_edge_litert": used only without it
                warnings.simplefilter("ignore", UserWarning)
                return interpreter(**kwargs)

    return Interpreter


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


__all__ = [
    "TFLiteGenerator",
    "images_from_subpixels",
    "keras_to_tflite",
    "prepare_for_tflite",
    "tflite_available",
    "to_tflite",
]
