"""In-memory training batches for any backend (no TensorFlow needed)."""

import keras
import numpy as np
from keras.utils import PyDataset


class ArrayBatches(PyDataset):
    """Shuffled, optionally flipped `(images, tags)` batches from in-memory arrays.

    The batch at global position `p = epoch * steps_per_epoch + index` depends
    only on `(seed, p)`, so a resumed run that sets its epoch sees the batches
    an uninterrupted run would have seen.

    Args:
        images: `(n, h, w, 3)` uint8 (mapped to [-1, 1]) or float images in [-1, 1].
        tags: `(n, T)` multi-hot tags.
        batch_size: images per batch (every batch is full).
        steps_per_epoch: batches per Keras epoch.
        seed: seed of the order and the flips.
        flip: flip each image horizontally with probability 0.5.

    Examples:
        >>> import numpy as np
        >>> data = ArrayBatches(np.zeros((10, 8, 8, 3), "uint8"), np.zeros((10, 34)), 4, 5)
        >>> images, tags = data[0]
        >>> images.shape, float(images.min())
        ((4, 8, 8, 3), -1.0)
    """

    def __init__(self, images, tags, batch_size, steps_per_epoch, seed=0, flip=True):
        super().__init__()
        images, tags = np.asarray(images), np.asarray(tags, dtype="float32")
        if len(images) != len(tags):
            raise ValueError(
                f"images and tags differ in length. Received: {len(images)} and {len(tags)}"
            )
        if len(images) < batch_size:
            raise ValueError(
                f"The dataset has {len(images)} images, fewer than one batch "
                f"(batch_size={batch_size})."
            )
        self.images, self.tags = images, tags
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed
        self.flip = flip
        self.epoch = 0
        self._orders = {}

    def __len__(self):
        return self.steps_per_epoch

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _order(self, rnd):
        if rnd not in self._orders:
            self._orders = {
                rnd: np.random.default_rng([self.seed, rnd]).permutation(len(self.images))
            }
        return self._orders[rnd]

    def __getitem__(self, index):
        return self.batch(self.epoch * self.steps_per_epoch + index)

    def batch(self, position):
        """The batch at global position `position` (0 is the run's first batch)."""
        position = int(position)
        per_round = len(self.images) // self.batch_size
        rnd, k = divmod(position, per_round)
        idx = np.sort(self._order(rnd)[k * self.batch_size : (k + 1) * self.batch_size])
        images = self.images[idx]
        if images.dtype == np.uint8:
            images = images.astype("float32") / 127.5 - 1.0
        else:
            images = images.astype("float32")
        if self.flip:
            flips = np.random.default_rng([self.seed, rnd, k, 1]).random(len(idx)) < 0.5
            images[flips] = images[flips, :, ::-1]
        return images, self.tags[idx]

    def for_fit(self, start, stop):
        """`(data, callbacks)` for `fit` over the steps `[start, stop)`: a `tf.data` dataset
        on TensorFlow; on other backends this object and the callback that tells it the epoch.
        """
        if keras.backend.backend() == "tensorflow":
            return self.to_tf_dataset(start, stop), []
        set_epoch = keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs=None: self.set_epoch(epoch)
        )
        return self, [set_epoch]

    def to_tf_dataset(self, start, stop):
        """A `tf.data.Dataset` of the batches at positions `[start, stop)`, static shapes.

        On TensorFlow this feeds `fit` faster than the `PyDataset` protocol and
        gives the same batches.
        """
        import tensorflow as tf

        b = self.batch_size
        image_spec = tf.TensorSpec((b, *self.images.shape[1:]), tf.float32)
        tag_spec = tf.TensorSpec((b, self.tags.shape[1]), tf.float32)

        def load(position):
            images, tags = tf.numpy_function(
                self.batch, [position], (tf.float32, tf.float32), stateful=False
            )
            return tf.ensure_shape(images, image_spec.shape), tf.ensure_shape(tags, tag_spec.shape)

        positions = tf.data.Dataset.range(start, stop)
        return positions.map(load, num_parallel_calls=1).prefetch(2)
