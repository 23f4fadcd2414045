"""The generator rewritten for inference: batch norm folded, the last pixel shuffle moved.

Training needs the generator as the paper draws it; serving one image needs it
fast. `fuse_generator` rebuilds a trained generator into a model that computes
the same images (to float32 rounding) with fewer and cheaper operations:

- every batch normalization that follows a dense or convolution layer is folded
  into that layer's kernel and bias (inference mode: moving statistics);
- in the upsampling blocks, the per-channel batch norm and PReLU that follow
  the pixel shuffle are applied before it, on the `4 * C` channels the
  convolution makes (each of the `C` channel's scale, shift and slope repeated
  for the 4 sub-pixel positions);
- on TensorFlow (`subpixel_rgb=None` picks by backend), the final `k x k`
  convolution to RGB runs at full resolution with only 3 output channels, a
  shape TensorFlow's CPU convolution handles badly (23 ms of the paper
  generator's 57 ms at batch 1 on a 2-core CPU). It runs instead on the last
  block's pre-shuffle map (half the resolution, `4 * C` channels) as a
  convolution to `4 * 3` channels of side `2 * ceil((k // 2) / 2) + 1` (5 for
  the paper's 9), and one pixel shuffle of the 12-channel result follows.
  This is exact: each tap of the new kernel is the sum of the original taps
  that land on it. On JAX the plain 9x9 convolution is already fast (8 ms)
  and the rewritten one slower (19 ms), so JAX keeps it;
The result is made of built-in Keras layers, so it saves and loads like any exported
generator. Its batch norm layers are gone: it is for inference, not for further training.

(Winograd convolutions were tried here and in the TensorFlow Lite engine and removed: they
bought 1.28x at batch 1 and 1.09x at batch 64 on JAX, 1.08-1.10x in TensorFlow Lite, under the
1.3x that earns a special path; `benchmarks/results/winograd_decision.json`.)

Examples:
    >>> import numpy as np
    >>> from kanime.models import Generator
    >>> g = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
    ...               upsample_channels=16)
    >>> fused = fuse_generator(g)
    >>> z = np.random.default_rng(0).standard_normal((2, 8)).astype("float32")
    >>> tags = np.zeros((2, 34), "float32")
    >>> a = g.predict_on_batch([z, tags])
    >>> b = fused.predict_on_batch([z, tags])
    >>> bool(np.abs(np.asarray(a) - np.asarray(b)).max() < 1e-4)
    True
"""

import math

import keras
import numpy as np
from keras import layers

from kanime.models.layers import pixel_shuffle


class NotFusableError(ValueError):
    """The model is not laid out like `kanime.models.Generator`."""


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype="float32")


def _bn_scale_shift(bn):
    """The `(scale, shift)` of a batch norm layer in inference mode."""
    scale = 1.0 / np.sqrt(_numpy(bn.moving_variance) + bn.epsilon)
    if bn.scale:
        scale = scale * _numpy(bn.gamma)
    shift = -_numpy(bn.moving_mean) * scale
    if bn.center:
        shift = shift + _numpy(bn.beta)
    return scale, shift


def _folded(layer, bn, repeat=1):
    """`[kernel, bias]` of `layer` (Dense or Conv2D) followed by `bn`.

    The layer's output channel `i` meets the batch norm's channel `i % C`
    (`repeat` copies of the `C` batch norm channels side by side).
    """
    scale, shift = (np.tile(v, repeat) for v in _bn_scale_shift(bn))
    kernel = _numpy(layer.kernel) * scale
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1], "float32")
    return [kernel, bias * scale + shift]


def space_to_depth_kernel(kernel, factor=2):
    """The kernel of a conv on `space_to_depth(x)` equal to conv `kernel` on `x`.

    `kernel` is `(k, k, C, O)` with `k` odd, applied with `"same"` padding to a
    map of even side. The result is `(m, m, r * r * C, r * r * O)`, `r = factor`,
    to apply with `"same"` padding to the `(h / r, w / r, r * r * C)` map; its
    output, pixel-shuffled by `r`, is the original output. Channels are laid
    out as `pixel_shuffle` lays them out: `(row offset, column offset, channel)`.

    Examples:
        >>> space_to_depth_kernel(np.ones((9, 9, 1, 1), "float32")).shape
        (5, 5, 4, 4)
    """
    k, k2, c, o = kernel.shape
    if k != k2 or k % 2 == 0:
        raise ValueError(f"Expected a square kernel of odd side. Received shape {kernel.shape}")
    half, r = k // 2, factor
    reach = math.ceil(half / r)
    m = 2 * reach + 1
    out = np.zeros((m, m, r, r, c, r, r, o), "float32")
    for a in range(r):  # output sub-pixel row
        for b in range(r):  # output sub-pixel column
            for dy in range(-half, half + 1):
                for dx in range(-half, half + 1):
                    p, i = divmod(a + dy, r)
                    q, j = divmod(b + dx, r)
                    out[p + reach, q + reach, i, j, :, a, b, :] += kernel[dy + half, dx + half]
    return out.reshape(m, m, r * r * c, r * r * o)


def _layer(model, name):
    try:
        return model.get_layer(name)
    except ValueError:
        raise NotFusableError(
            f"The model has no layer {name!r}: it is not laid out like kanime.models.Generator."
        ) from None


def _activation(model, name, repeat=1):
    """A fresh copy of the activation `name`, its PReLU slopes repeated `repeat` times."""
    act = _layer(model, name)
    if isinstance(act, layers.ReLU):
        return layers.ReLU(name=name), None
    if not isinstance(act, layers.PReLU):
        raise NotFusableError(f"Layer {name!r} is a {type(act).__name__}, not PReLU or ReLU.")
    alpha = np.tile(_numpy(act.alpha), (1, 1, repeat))
    return layers.PReLU(shared_axes=[1, 2], name=name), [alpha]


def fuse_generator(model, subpixel_rgb=None, name=None):
    """An inference-only copy of a kanime generator, with the same outputs.

    Args:
        model: a `kanime.models.Generator`, or the plain functional model that
            `kanime fit` exports as `generator.keras` (the same layer names).
        subpixel_rgb: run the final RGB convolution on the last pre-shuffle
            map (see above); None picks by backend (TensorFlow: yes).
        name: the new model's name (default: the old one's with `_fused`).

    Returns:
        A functional `keras.Model` `[z, tags] -> images`, float32, made of
        built-in layers.

    Raises:
        NotFusableError: `model` is not laid out like `kanime.models.Generator`.
    """
    if subpixel_rgb is None:
        subpixel_rgb = keras.backend.backend() == "tensorflow"
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # inference runs in float32, whatever trained it
    try:
        return _fuse(model, subpixel_rgb, name)
    finally:
        keras.config.set_dtype_policy(policy)


def _fuse(model, subpixel_rgb, name):
    names = {layer.name for layer in model.layers}
    num_blocks = sum(1 for n in names if n.startswith("residual_") and n.endswith("_conv1"))
    num_upsamples = sum(1 for n in names if n.startswith("upsample_") and n.endswith("_conv"))
    if num_upsamples == 0:
        raise NotFusableError("The model has no `upsample_*_conv` layers.")
    weights = {}  # new layer -> its weights, set once the model is built

    def add(layer, values):
        if values is not None:
            weights[layer] = values
        return layer

    z_in, tags_in = model.inputs
    z = keras.Input(tuple(z_in.shape[1:]), name="z")
    tags = keras.Input(tuple(tags_in.shape[1:]), name="tags")
    condition = tags
    if "signed_tags" in names:
        condition = layers.Rescaling(2.0, offset=-1.0, name="signed_tags")(tags)
    h = layers.Concatenate(name="condition")([z, condition])

    project, project_bn = _layer(model, "project"), _layer(model, "project_bn")
    channels = int(project_bn.moving_mean.shape[-1])
    units = int(project.kernel.shape[-1])
    base = math.isqrt(units // channels)
    h = add(layers.Dense(units, name="project"), _folded(project, project_bn, base * base))(h)
    h = layers.Reshape((base, base, channels), name="reshape")(h)
    h = add(*_activation(model, "project_act"))(h)
    skip = h
    for i in range(num_blocks):
        block = f"residual_{i}"
        x = h
        for k, act in ((1, True), (2, False)):
            conv = _layer(model, f"{block}_conv{k}")
            folded = _folded(conv, _layer(model, f"{block}_bn{k}"))
            h = add(layers.Conv2D(channels, 3, padding="same", name=f"{block}_conv{k}"), folded)(h)
            if act:
                h = add(*_activation(model, f"{block}_act"))(h)
        h = layers.Add(name=f"{block}_add")([x, h])
    trunk_bn = _layer(model, "trunk_bn")  # follows an Add: nothing to fold it into
    h = add(
        layers.BatchNormalization(epsilon=trunk_bn.epsilon, name="trunk_bn"),
        [_numpy(w) for w in trunk_bn.weights],
    )(h)
    h = add(*_activation(model, "trunk_act"))(h)
    h = layers.Add(name="trunk_skip")([h, skip])
    for i in range(num_upsamples):
        block = f"upsample_{i}"
        conv = _layer(model, f"{block}_conv")
        folded = _folded(conv, _layer(model, f"{block}_bn"), repeat=4)
        h = add(layers.Conv2D(conv.filters, 3, padding="same", name=f"{block}_conv"), folded)(h)
        h = add(*_activation(model, f"{block}_act", repeat=4))(h)
        if i < num_upsamples - 1 or not subpixel_rgb:
            h = pixel_shuffle(h, 2, name=f"{block}_shuffle")
    to_rgb = _layer(model, "to_rgb")
    kernel, bias = _numpy(to_rgb.kernel), _numpy(to_rgb.bias)
    if subpixel_rgb:
        kernel, bias = space_to_depth_kernel(kernel), np.tile(bias, 4)
    rgb = layers.Conv2D(kernel.shape[-1], kernel.shape[0], padding="same", name="to_rgb")
    h = add(rgb, [kernel, bias])(h)
    if subpixel_rgb:
        h = pixel_shuffle(h, 2, name="to_rgb_shuffle")
    images = layers.Activation("tanh", name="images")(h)
    fused = keras.Model([z, tags], images, name=name or f"{model.name}_fused")
    for layer, values in weights.items():
        layer.set_weights(values)
    return fused
