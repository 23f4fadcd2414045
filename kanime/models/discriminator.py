"""The residual discriminator of Jin et al. (2017) with a tag head."""

import math

import keras
from keras import layers

from kanime.models.layers import discriminator_residual_block
from kanime.models.validation import check_positive_int, check_resolution

NEGATIVE_SLOPE = 0.2


@keras.saving.register_keras_serializable(package="kanime")
class Discriminator(keras.Model):
    """Residual discriminator: images -> `(logit, tag_logits)`.

    A 4x4 stride-2 convolution, then one stage per halving down to 2x2: each
    stage is `blocks_per_stage` residual blocks followed by a stride-2
    convolution that doubles the channels (4x4 kernels for the first two
    stages, 3x3 after). No batch normalization; leaky ReLU with slope 0.2.
    Two dense heads read the flattened 2x2 map: one real/fake logit and one
    logit per tag.

    Args:
        resolution: input side in pixels, one of 32, 64, 128, 256.
        num_tags: number of tag logits (34 in the paper).
        channels: channels after the first convolution (32 in the paper).
        blocks_per_stage: residual blocks per stage (2 in the paper).
        **kwargs: passed to `keras.Model`.

    Examples:
        >>> import numpy as np
        >>> d = Discriminator(resolution=32, channels=8, blocks_per_stage=1)
        >>> logit, tag_logits = d.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
        >>> logit.shape, tag_logits.shape
        ((2, 1), (2, 34))

    Reference:
        Jin et al., "Towards the Automatic Anime Characters Creation with
        Generative Adversarial Networks", arXiv 1708.05509 (2017), Figure 3.
    """

    def __init__(self, resolution=128, num_tags=34, channels=32, blocks_per_stage=2, **kwargs):
        check_resolution(resolution)
        check_positive_int("num_tags", num_tags)
        check_positive_int("channels", channels)
        check_positive_int("blocks_per_stage", blocks_per_stage)
        num_stages = int(math.log2(resolution)) - 2

        # === Functional Model ===
        images = keras.Input((resolution, resolution, 3), name="images")
        h = layers.Conv2D(channels, 4, strides=2, padding="same", name="stem")(images)
        h = layers.LeakyReLU(NEGATIVE_SLOPE, name="stem_act")(h)
        width = channels
        for stage in range(num_stages):
            for block in range(blocks_per_stage):
                h = discriminator_residual_block(
                    h, width, NEGATIVE_SLOPE, name=f"stage_{stage}_block_{block}"
                )
            width *= 2
            kernel = 4 if stage < 2 else 3
            h = layers.Conv2D(width, kernel, strides=2, padding="same", name=f"stage_{stage}_down")(
                h
            )
            h = layers.LeakyReLU(NEGATIVE_SLOPE, name=f"stage_{stage}_act")(h)
        h = layers.Flatten(name="flatten")(h)
        logit = layers.Dense(1, dtype="float32", name="logit")(h)
        tag_logits = layers.Dense(num_tags, dtype="float32", name="tag_logits")(h)
        super().__init__(inputs=images, outputs=(logit, tag_logits), **kwargs)

        # === Config ===
        self.resolution = resolution
        self.num_tags = num_tags
        self.channels = channels
        self.blocks_per_stage = blocks_per_stage

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "resolution": self.resolution,
            "num_tags": self.num_tags,
            "channels": self.channels,
            "blocks_per_stage": self.blocks_per_stage,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
