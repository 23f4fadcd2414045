"""Building blocks of the SRResNet-style generator and discriminator.

Every block is made of built-in Keras layers, so an exported model loads with
plain `keras.saving.load_model` in a process that never imported kanime.
"""

import keras
from keras import layers

BN_MOMENTUM = 0.9
SHUFFLE_FACTOR = 2  # each sub-pixel upsampling doubles the side


def activation_layer(activation, name=None):
    """`"prelu"` (the paper; per-channel slopes starting at 0.25) or `"relu"`."""
    if activation == "prelu":
        return layers.PReLU(
            alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
        )
    if activation == "relu":
        return layers.ReLU(name=name)
    raise ValueError(
        f"`activation` must be one of 'prelu' or 'relu'. Received: activation={activation!r}"
    )


def pixel_shuffle(x, factor, name):
    """Sub-pixel rearrangement `(h, w, c * r * r)` -> `(h * r, w * r, c)`.

    Reference: Shi et al., "Real-Time Single Image and Video Super-Resolution
    Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016.
    """
    _, h, w, c = x.shape
    r = factor
    x = layers.Reshape((h, w, r, r, c // (r * r)), name=f"{name}_split")(x)
    x = layers.Permute((1, 3, 2, 4, 5), name=f"{name}_permute")(x)
    return layers.Reshape((h * r, w * r, c // (r * r)), name=f"{name}_merge")(x)


def generator_residual_block(x, channels, activation, name):
    """SRResNet block: conv3x3, BN, PReLU, conv3x3, BN, add the input."""
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv1")(x)
    h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(h)
    h = activation_layer(activation, name=f"{name}_act")(h)
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv2")(h)
    h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(h)
    return layers.Add(name=f"{name}_add")([x, h])


def subpixel_upsample(x, channels, activation, name):
    """conv3x3 to `channels`, pixel shuffle x2, BN, PReLU."""
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv")(x)
    h = pixel_shuffle(h, SHUFFLE_FACTOR, name=f"{name}_shuffle")
    h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(h)
    return activation_layer(activation, name=f"{name}_act")(h)


def resize_upsample(x, channels, activation, name):
    """Nearest-neighbour upsampling x2, conv3x3 to `channels`, BN, PReLU.

    The alternative to `subpixel_upsample` that cannot draw a checkerboard: every
    output pixel comes from one kernel (Odena et al., "Deconvolution and
    Checkerboard Artifacts", Distill 2016). With `channels` a quarter of the
    sub-pixel block's, it gives the same output width for the same multiply-adds.
    """
    h = layers.UpSampling2D(SHUFFLE_FACTOR, interpolation="nearest", name=f"{name}_up")(x)
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv")(h)
    h = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(h)
    return activation_layer(activation, name=f"{name}_act")(h)


def icnr_kernel(shape, factor, seed=None):
    """An ICNR starting kernel for a convolution followed by `pixel_shuffle(factor)`.

    A Glorot-uniform kernel for the `channels / factor**2` output channels is
    repeated for every sub-pixel, so after the shuffle the `factor x factor`
    pixels made from one input pixel start equal: a nearest-neighbour upsampling
    of a plain convolution, with no checkerboard.

    Args:
        shape: `(kh, kw, in_channels, out_channels)`, `out_channels` divisible by
            `factor**2`.
        factor: the pixel shuffle's factor.
        seed: seed of the Glorot draw.

    Examples:
        >>> k = keras.ops.convert_to_numpy(icnr_kernel((3, 3, 2, 8), 2, seed=0))
        >>> bool((k[..., 0:2] == k[..., 6:8]).all())  # sub-pixels 0 and 3, channels 0-1
        True

    Reference:
        Aitken et al., "Checkerboard artifact free sub-pixel convolution", arXiv
        1707.02937 (2017).
    """
    kh, kw, cin, cout = shape
    groups = factor * factor
    if cout % groups:
        raise ValueError(
            f"ICNR needs output channels divisible by factor**2 ({groups}). Received: {shape}"
        )
    base = keras.initializers.GlorotUniform(seed)((kh, kw, cin, cout // groups))
    # `pixel_shuffle` reads channel `s * (cout // groups) + c` as sub-pixel s, channel c.
    return keras.ops.tile(base, (1, 1, 1, groups))


def discriminator_residual_block(x, channels, negative_slope, name):
    """conv3x3, leaky ReLU, conv3x3, add the input, leaky ReLU (no batch norm)."""
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv1")(x)
    h = layers.LeakyReLU(negative_slope, name=f"{name}_act1")(h)
    h = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv2")(h)
    h = layers.Add(name=f"{name}_add")([x, h])
    return layers.LeakyReLU(negative_slope, name=f"{name}_act2")(h)
