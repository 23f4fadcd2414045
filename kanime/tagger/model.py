"""The tagger network: a multi-label CNN, the stand-in for Illustration2Vec, whose weights
are not obtainable. Images in [-1, 1] -> one score in [0, 1] per tag; built-in Keras layers
only, so `tagger.keras` loads with plain `keras.saving.load_model`."""

import keras
from keras import layers


def build_tagger(resolution=64, num_tags=34, channels=32, name="tagger"):
    """The tagger network: images in [-1, 1] -> a score in [0, 1] per tag.

    Four stages of conv3x3-BN-ReLU followed by a stride-2 conv that doubles the
    channels, global average pooling, a 256-d `features` layer (the features
    t-SNE pictures use) and a sigmoid `scores` head.

    Args:
        resolution: input side in pixels (a multiple of 16).
        num_tags: number of tags scored.
        channels: channels of the first stage.
        name: the model's name.

    Examples:
        >>> tagger = build_tagger(32, channels=8)
        >>> tagger.output_shape
        (None, 34)
    """
    images = keras.Input((resolution, resolution, 3), name="images")
    h = images
    width = channels
    for stage in range(4):
        h = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"s{stage}_conv")(h)
        h = layers.BatchNormalization(name=f"s{stage}_bn")(h)
        h = layers.ReLU(name=f"s{stage}_relu")(h)
        h = layers.Conv2D(width * 2, 3, strides=2, padding="same", name=f"s{stage}_down")(h)
        h = layers.ReLU(name=f"s{stage}_down_relu")(h)
        width *= 2
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    features = layers.Dense(256, activation="relu", name="features")(h)
    scores = layers.Dense(num_tags, activation="sigmoid", name="scores")(features)
    return keras.Model(images, scores, name=name)


__all__ = ["build_tagger"]
