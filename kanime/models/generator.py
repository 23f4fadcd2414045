"""The SRResNet-style generator of Jin et al. (2017)."""

import keras
from keras import layers

from kanime.models.layers import (
    BN_MOMENTUM,
    SHUFFLE_FACTOR,
    activation_layer,
    generator_residual_block,
    icnr_kernel,
    resize_upsample,
    subpixel_upsample,
)
from kanime.models.validation import check_positive_int, check_resolution

NUM_UPSAMPLES = 3
UPSAMPLE_INITS = ("default", "icnr")
UPSAMPLES = ("subpixel", "resize")


@keras.saving.register_keras_serializable(package="kanime")
class Generator(keras.Model):
    """Tag-conditioned SRResNet generator: `[z, tags]` -> images in [-1, 1].

    The noise and the (encoded) tags are concatenated, projected by a dense
    layer to a `resolution / 8` square map, passed through `num_blocks`
    residual blocks with a long skip connection, then upsampled three times
    by sub-pixel convolution and mapped to RGB by a 9x9 convolution and tanh.

    Args:
        resolution: output side in pixels, one of 32, 64, 128, 256.
        latent_dim: size of the noise vector `z` (128 in the paper).
        num_tags: size of the multi-hot tag vector (34 in the paper).
        channels: feature channels of the residual trunk (64 in the paper).
        num_blocks: residual blocks (16 in the paper).
        upsample_channels: filters of the convolution before each pixel shuffle
            (256 in the paper); must be divisible by 4.
        activation: `"prelu"` (the paper) or `"relu"`.
        tag_encoding: `"binary"` feeds the 0/1 tags, `"signed"` feeds -1/+1.
        upsample_init: `"default"` (Glorot uniform kernels, the paper) or
            `"icnr"`: each sub-pixel convolution starts with the same kernel for
            the four sub-pixels of an output pixel, so the pixel shuffle starts as
            a nearest-neighbour upsampling and draws no checkerboard (Aitken et
            al., "Checkerboard artifact free sub-pixel convolution", 2017). Only
            the starting weights differ; the layers are the same.
        upsample: `"subpixel"` (the paper: convolution then pixel shuffle) or
            `"resize"` (nearest-neighbour upsampling then a convolution to
            `upsample_channels / 4`: the same multiply-adds, and no sub-pixels to
            disagree, so no checkerboard). Its blocks are named `resize_{i}`, so
            the inference engines that rewrite the sub-pixel blocks leave it as it is.
        **kwargs: passed to `keras.Model` (`name`, `dtype`, ...).

    Examples:
        >>> import numpy as np
        >>> g = Generator(resolution=32, channels=16, num_blocks=1, upsample_channels=64)
        >>> z = np.random.normal(size=(2, 128)).astype("float32")
        >>> tags = np.zeros((2, 34), "float32")
        >>> g.predict([z, tags], verbose=0).shape
        (2, 32, 32, 3)

    Reference:
        Jin et al., "Towards the Automatic Anime Characters Creation with
        Generative Adversarial Networks", arXiv 1708.05509 (2017), Figure 2.
    """

    def __init__(
        self,
        resolution=128,
        latent_dim=128,
        num_tags=34,
        channels=64,
        num_blocks=16,
        upsample_channels=256,
        activation="prelu",
        tag_encoding="binary",
        upsample_init="default",
        upsample="subpixel",
        **kwargs,
    ):
        check_resolution(resolution)
        for name, value in [
            ("latent_dim", latent_dim),
            ("num_tags", num_tags),
            ("channels", channels),
            ("num_blocks", num_blocks),
            ("upsample_channels", upsample_channels),
        ]:
            check_positive_int(name, value)
        if upsample_channels % 4:
            raise ValueError(
                "`upsample_channels` must be divisible by 4 (pixel shuffle x2). "
                f"Received: upsample_channels={upsample_channels}"
            )
        if upsample_init not in UPSAMPLE_INITS:
            raise ValueError(
                f"`upsample_init` must be one of {UPSAMPLE_INITS}. "
                f"Received: upsample_init={upsample_init!r}"
            )
        if upsample not in UPSAMPLES:
            raise ValueError(
                f"`upsample` must be one of {UPSAMPLES}. Received: upsample={upsample!r}"
            )
        if upsample == "resize" and upsample_init == "icnr":
            raise ValueError(
                "`upsample_init='icnr'` initialises sub-pixel convolutions; with "
                "`upsample='resize'` there are none. Use upsample_init='default'."
            )
        base = resolution // 2**NUM_UPSAMPLES

        # === Functional Model ===
        z = keras.Input((latent_dim,), name="z")
        tags = keras.Input((num_tags,), name="tags")
        if tag_encoding not in ("binary", "signed"):
            raise ValueError(
                "`tag_encoding` must be 'binary' or 'signed'. "
                f"Received: tag_encoding={tag_encoding!r}"
            )
        condition = tags
        if tag_encoding == "signed":
            condition = layers.Rescaling(2.0, offset=-1.0, name="signed_tags")(tags)
        h = layers.Concatenate(name="condition")([z, condition])
        h = layers.Dense(base * base * channels, name="project")(h)
        h = layers.Reshape((base, base, channels), name="reshape")(h)
        h = layers.BatchNormalization(momentum=BN_MOMENTUM, name="project_bn")(h)
        h = activation_layer(activation, name="project_act")(h)
        skip = h
        for i in range(num_blocks):
            h = generator_residual_block(h, channels, activation, name=f"residual_{i}")
        h = layers.BatchNormalization(momentum=BN_MOMENTUM, name="trunk_bn")(h)
        h = activation_layer(activation, name="trunk_act")(h)
        h = layers.Add(name="trunk_skip")([h, skip])
        for i in range(NUM_UPSAMPLES):
            if upsample == "resize":
                h = resize_upsample(h, upsample_channels // 4, activation, name=f"resize_{i}")
            else:
                h = subpixel_upsample(h, upsample_channels, activation, name=f"upsample_{i}")
        h = layers.Conv2D(3, 9, padding="same", name="to_rgb")(h)
        images = layers.Activation("tanh", dtype="float32", name="images")(h)
        super().__init__(inputs=[z, tags], outputs=images, **kwargs)
        if upsample_init == "icnr":
            for i in range(NUM_UPSAMPLES):
                conv = self.get_layer(f"upsample_{i}_conv")
                conv.kernel.assign(icnr_kernel(conv.kernel.shape, SHUFFLE_FACTOR))

        # === Config ===
        self.resolution = resolution
        self.latent_dim = latent_dim
        self.num_tags = num_tags
        self.channels = channels
        self.num_blocks = num_blocks
        self.upsample_channels = upsample_channels
        self.activation = activation
        self.tag_encoding = tag_encoding
        self.upsample_init = upsample_init
        self.upsample = upsample

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "resolution": self.resolution,
            "latent_dim": self.latent_dim,
            "num_tags": self.num_tags,
            "channels": self.channels,
            "num_blocks": self.num_blocks,
            "upsample_channels": self.upsample_channels,
            "activation": self.activation,
            "tag_encoding": self.tag_encoding,
            "upsample_init": self.upsample_init,
            "upsample": self.upsample,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
