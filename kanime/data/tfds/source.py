"""`data.source: tfds`: training faces read through the `kanime_faces` TFDS builder.

`data.path` is the builder's manual folder (a `kanime prepare` output, or a face folder
with `images/` and `labels.csv`, see `kanime_faces`); the first run prepares the TFDS copy
in TFDS's data folder (`~/tensorflow_datasets`, or `$TFDS_DATA_DIR`), later runs read it.
TensorFlow Datasets needs TensorFlow: it is imported when faces are loaded, not before.
"""

from __future__ import annotations

import numpy as np

RESOLUTIONS = (64, 128)
"""The image sizes the builder has configs for."""


def load_tfds_arrays(manual_dir, image_size: int, allow_untagged: bool = True,
                     progress: bool = False, data_dir=None):  # fmt: skip
    """Every face of the `kanime_faces/<image_size>` TFDS dataset as in-memory arrays.

    Args:
        manual_dir: the builder's manual folder (see the module docstring).
        image_size: 64 or 128, the builder's configs.
        allow_untagged: keep faces whose `tagged` feature is false.
        progress: show TFDS's progress bars while it prepares the dataset.
        data_dir: TFDS's data folder; None for its default.

    Returns:
        `(images, tags)`: uint8 RGB `(n, s, s, 3)` and float32 `(n, 34)`, as
        `kanime.data.pipeline.load_arrays` gives them, for `ArrayBatches`.

    Raises:
        ValueError: an image size the builder has no config for, or no faces left.
        FileNotFoundError: the manual folder holds neither layout.
    """
    import tensorflow_datasets as tfds

    # The builder module imports TensorFlow Datasets (and so TensorFlow): only when used.
    from kanime.data.tfds.kanime_faces import Builder

    if image_size not in RESOLUTIONS:
        raise ValueError(
            f"The kanime_faces TFDS builder makes {' or '.join(map(str, RESOLUTIONS))} px "
            f"faces. Received: image_size={image_size}"
        )
    builder = Builder(config=str(image_size), data_dir=data_dir)
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    if not progress:
        tfds.disable_progress_bar()
    builder.download_and_prepare(download_config=config)
    images, tags = [], []
    for face in tfds.as_numpy(builder.as_dataset(split="train")):
        if allow_untagged or face["tagged"]:
            images.append(face["image"])
            tags.append(face["tags"])
    if not images:
        raise ValueError(f"The kanime_faces dataset from {manual_dir} holds no tagged faces.")
    return np.stack(images), np.stack(tags).astype("float32")


__all__ = ["load_tfds_arrays"]
