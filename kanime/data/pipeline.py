"""Input pipelines over the TFRecord shards of `kanime.data.tfrecords`.

Two loaders read the same shards:

- `make_dataset`: a `tf.data` pipeline of `(images, tags)` batches, for the
  TensorFlow backend. It streams, shuffles, decodes, flips and prefetches in
  TensorFlow's threads.
- `load_arrays`: the whole data set as in-memory uint8 arrays, read without
  TensorFlow (records through protobuf, OpenCV JPEG decoding), for the JAX backend.
  `kanime.data.batches.ArrayBatches` then shuffles, flips and batches them.

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

import random

import cv2
import numpy as np

from kanime.data.tfds.source import load_tfds_arrays
from kanime.data.tfrecords import count_records, decode_example, iter_records, list_shards
from kanime.recipe import RecipeError


def _first_record(files):
    for path in files:
        for record in iter_records(path):
            return path, decode_example(record)
    raise ValueError(f"The shards hold no records: {files}")


def make_dataset(
    path_or_pattern,
    batch_size: int,
    image_size: int,
    *,
    num_tags: int = 34,
    shuffle: bool = True,
    shuffle_buffer: int = 4096,
    flip: bool = True,
    seed: int | None = None,
    repeat: bool = True,
    drop_remainder: bool = True,
    allow_untagged: bool = True,
    num_parallel_calls: int | None = None,
    cycle_length: int = 16,
    parallel_reads: int | None = None,
    cache: bool | None = None,
    cache_limit_bytes: int = 2 * 1024**3,
):
    """A `tf.data.Dataset` of `(images, tags)` training batches from TFRecord shards.

    The shards are read interleaved, records are shuffled in a buffer, batched,
    then parsed with one vectorized `tf.io.parse_example` per batch; the JPEGs
    are decoded (and resized when their size is not `image_size`: area averaging,
    which antialiases, to shrink; bilinear to enlarge), flipped at random and
    scaled to [-1, 1].

    With a `seed` the pipeline is deterministic: two datasets made with the same
    seed give the same batches (the shuffles are seeded, the flips are stateless
    random ops keyed on the seed and the batch counter, and the dataset's
    `options().deterministic` is True). Without one, the order of the shards'
    records may vary from run to run, which is faster.

    A data set whose decoded images fit in `cache_limit_bytes` is decoded once
    and kept in memory (`cache`): its first pass runs at JPEG-decoding speed,
    every later pass only shuffles, flips and batches the decoded images. Each
    pass is then a uniform shuffle of the whole data set. A larger one streams
    from the shards every pass, shuffled in a buffer of `shuffle_buffer` records.

    Args:
        path_or_pattern: a folder of shards, a glob pattern or a file (see
            `kanime.data.tfrecords.list_shards`).
        batch_size: images per batch.
        image_size: side of the square output images in pixels.
        num_tags: length of the tag vectors stored in the shards.
        shuffle: shuffle the shard order and the records (in a buffer).
        shuffle_buffer: records in the shuffle buffer.
        flip: flip each image horizontally with probability 0.5.
        seed: seed of the shuffles and flips; None for a random, faster pipeline.
        repeat: repeat forever (each pass reshuffled).
        drop_remainder: drop a last, smaller batch (gives a static batch size).
        allow_untagged: keep records whose `tagged` feature is 0.
        num_parallel_calls: batches decoded in parallel; None for `tf.data.AUTOTUNE`.
        cycle_length: shards read at once (records alternate between them).
        parallel_reads: threads reading the shards; None reads them in the
            pipeline's own thread, the cheapest on a local disk. A few threads
            (or `tf.data.AUTOTUNE`) help on a network file system.
        cache: keep the decoded images in memory after the first pass; None
            decides by `cache_limit_bytes`.
        cache_limit_bytes: the most memory the decoded images may take for
            `cache=None` to cache them (they take `records x image_size^2 x 3`
            bytes).

    Returns:
        A dataset of `(images, tags)`: float32 images `(batch, image_size,
        image_size, 3)` in [-1, 1] and float32 tags `(batch, num_tags)`.

    Raises:
        FileNotFoundError: no shards at `path_or_pattern`.
        ValueError: the shards' tag vectors do not have `num_tags` values.

    Examples:
        ```python
        dataset = make_dataset("data/getchu", batch_size=64, image_size=128, seed=0)
        images, tags = next(iter(dataset))  # (64, 128, 128, 3), (64, 34)
        ```
    """
    import tensorflow as tf

    files = list_shards(path_or_pattern)
    batch_size, image_size, num_tags = int(batch_size), int(image_size), int(num_tags)
    for name, value in (("batch_size", batch_size), ("image_size", image_size)):
        if value < 1:
            raise ValueError(f"`{name}` must be positive. Received: {name}={value}")
    first_path, first = _first_record(files)
    if len(first["tags"]) != num_tags:
        raise ValueError(
            f"The shards store {len(first['tags'])} tags per face ({first_path}), "
            f"but num_tags={num_tags}. Pass the length of the data set's tag vocabulary."
        )
    autotune = tf.data.AUTOTUNE
    parallel = autotune if num_parallel_calls is None else num_parallel_calls
    deterministic = seed is not None
    flip_seed = seed if seed is not None else random.SystemRandom().randrange(2**31)

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "tags": tf.io.FixedLenFeature([num_tags], tf.float32),
    }
    size = tf.constant([image_size, image_size])

    def decode(args):
        jpeg, mirror = args
        # The accurate integer DCT gives the same pixels as OpenCV in `load_arrays`
        # (TensorFlow's default is the fast, less accurate one).
        image = tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE")

        def resize():
            # Shrinking averages over each output pixel's area (an antialiased box
            # filter, the same as `cv2.INTER_AREA` in `load_arrays`); enlarging is
            # bilinear (the same as `cv2.INTER_LINEAR`).
            shrink = tf.reduce_all(tf.shape(image)[:2] >= size)
            out = tf.cond(
                shrink,
                lambda: tf.image.resize(image, size, method="area"),
                lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
            )
            return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)

        same = tf.reduce_all(tf.shape(image)[:2] == size)
        image = tf.ensure_shape(tf.cond(same, lambda: image, resize), (image_size, image_size, 3))
        # One image at a time: several times faster than a select over the batch.
        image = tf.cond(mirror, lambda: tf.reverse(image, axis=[1]), lambda: image)
        return image

    def mirrors(counter, count):
        if flip:  # stateless: the flips of batch `counter` depend only on (seed, counter)
            key = tf.stack([tf.constant(flip_seed, tf.int64), counter])
            return tf.random.stateless_uniform(count, seed=key) < 0.5
        return tf.zeros(count, tf.bool)

    def flip_some(images, mirror):
        # Mirrors the images where `mirror` is True. Splitting the batch, reversing one
        # part and stitching it back moves each pixel about 3 times; a select over the
        # batch (`tf.where`) was several times slower.
        mirror = tf.cast(mirror, tf.int32)
        index = tf.dynamic_partition(tf.range(tf.shape(images)[0]), mirror, 2)
        kept, flipped = tf.dynamic_partition(images, mirror, 2)
        return tf.dynamic_stitch(index, [kept, tf.reverse(flipped, axis=[2])])

    def decode_batch(serialized, counter=None):
        """uint8 images and tags of a batch of records, flipped when `counter` is given."""
        # One vectorized parse per batch, then one map_fn over its JPEGs: on 2 CPU cores
        # this cost less CPU per image than a parse-and-decode map per record.
        parsed = tf.io.parse_example(serialized, spec)
        count = tf.shape(serialized)[:1]
        mirror = tf.zeros(count, tf.bool) if counter is None else mirrors(counter, count)
        images = tf.map_fn(
            decode,
            (parsed["image"], mirror),
            fn_output_signature=tf.TensorSpec((image_size, image_size, 3), tf.uint8),
        )
        return images, parsed["tags"]

    total = count_records(files)
    if cache is None:
        cache = total * image_size * image_size * 3 <= cache_limit_bytes
    if cache:
        # Decoded once, in shard order, and kept in memory; each pass is then a uniform
        # shuffle of the whole data set and costs no decoding.
        faces = tf.data.TFRecordDataset(files)
        if not allow_untagged:
            faces = _without_untagged(tf, faces)
        faces = faces.batch(256).map(decode_batch, num_parallel_calls=parallel, deterministic=True)
        faces = faces.unbatch().cache()
        if shuffle:
            faces = faces.shuffle(max(total, 1), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            faces = faces.repeat()

        def load(counter, batch):
            images, tags = batch
            if flip:
                images = flip_some(images, mirrors(counter, tf.shape(images)[:1]))
            return _to_unit_range(tf, images), tags

    else:
        faces = _streamed_records(
            tf, files, shuffle, shuffle_buffer, seed, allow_untagged, cycle_length,
            parallel_reads,
        )  # fmt: skip
        if repeat:
            faces = faces.repeat()

        def load(counter, serialized):
            images, tags = decode_batch(serialized, counter)
            return _to_unit_range(tf, images), tags

    batches = faces.batch(batch_size, drop_remainder=drop_remainder).enumerate()
    batches = batches.map(load, num_parallel_calls=parallel, deterministic=deterministic)
    batches = batches.prefetch(autotune)
    options = tf.data.Options()
    options.deterministic = deterministic
    return batches.with_options(options)


def _to_unit_range(tf, images):
    # uint8 -> x / 127.5 - 1 in one kernel: dequantizing [0, 255] onto [-1, 1] gives
    # the same floats as a cast, a multiply and a subtract, several times faster.
    images = tf.bitcast(images, tf.quint8)
    return tf.quantization.dequantize(images, -1.0, 1.0, mode="MIN_COMBINED")


def _without_untagged(tf, records):
    tagged_spec = {"tagged": tf.io.FixedLenFeature([], tf.int64, default_value=0)}
    return records.filter(lambda r: tf.io.parse_single_example(r, tagged_spec)["tagged"] != 0)


def _streamed_records(tf, files, shuffle, shuffle_buffer, seed, allow_untagged, cycle_length,
                      parallel_reads):  # fmt: skip
    """The shards' records, interleaved and shuffled in a buffer of `shuffle_buffer`."""
    records = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        records = records.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = records.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(cycle_length, len(files))),
        block_length=1,
        num_parallel_calls=parallel_reads,
        deterministic=(seed is not None) if parallel_reads else None,
    )
    if not allow_untagged:
        records = _without_untagged(tf, records)
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    return records


def decode_face(jpeg: bytes, image_size: int, where: str) -> np.ndarray:
    """A face's JPEG as uint8 RGB `(image_size, image_size, 3)`; `where` names it in errors."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{where}: the JPEG does not decode.")
    if image.shape[:2] != (image_size, image_size):
        shrink = image.shape[0] >= image_size and image.shape[1] >= image_size
        method = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (image_size, image_size), interpolation=method)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_prepared(path) -> None:
    """Raises `RecipeError` (key `data.path`) when no `kanime prepare` shards are at `path`."""
    try:
        list_shards(path)
    except FileNotFoundError as e:
        raise RecipeError(
            f"data.path: no prepared dataset at {str(path)!r} ({e}). Make one from a folder "
            f"of illustrations with `kanime prepare SRC {path}`, then run this recipe again."
        ) from e


def load_arrays(path_or_pattern, image_size: int, allow_untagged: bool = True, progress=False):
    """Every face of the shards as in-memory arrays, read without TensorFlow.

    Records are read with `kanime.data.tfrecords.iter_records` and
    `decode_example`; JPEGs are decoded with OpenCV and resized to `image_size`
    when their size differs (`cv2.INTER_AREA` to shrink, `cv2.INTER_LINEAR` to
    enlarge). Feed the arrays to `kanime.data.batches.ArrayBatches` for shuffled,
    flipped batches.

    Args:
        path_or_pattern: a folder of shards, a glob pattern or a file (see
            `kanime.data.tfrecords.list_shards`).
        image_size: side of the square output images in pixels.
        allow_untagged: keep records whose `tagged` feature is 0.
        progress: show a `rich` progress bar.

    Returns:
        `(images, tags)`: uint8 RGB images `(n, image_size, image_size, 3)` and
        float32 tags `(n, T)`, in shard order.

    Raises:
        FileNotFoundError: no shards at `path_or_pattern`.
        ValueError: a corrupt shard, a JPEG that does not decode, tag vectors of
            different lengths, or no records left.

    Examples:
        ```python
        images, tags = load_arrays("data/getchu", 128, allow_untagged=False)
        batches = ArrayBatches(images, tags, batch_size=64, steps_per_epoch=500)
        ```
    """

    image_size = int(image_size)
    if image_size < 1:
        raise ValueError(f"`image_size` must be positive. Received: image_size={image_size}")
    files = list_shards(path_or_pattern)
    total = count_records(files)
    images = np.empty((total, image_size, image_size, 3), dtype=np.uint8)
    tags = None
    kept = 0

    def records():
        for path in files:
            for record in iter_records(path):
                yield path, record

    stream = records()
    if progress:
        from rich.progress import track

        stream = track(stream, total=total, description=f"Loading {total} faces")
    for path, record in stream:
        face = decode_example(record)
        if not allow_untagged and not face["tagged"]:
            continue
        if tags is None:
            tags = np.empty((total, len(face["tags"])), dtype=np.float32)
        elif len(face["tags"]) != tags.shape[1]:
            raise ValueError(
                f"{path}: face {face['id']!r} has {len(face['tags'])} tags; earlier faces "
                f"have {tags.shape[1]}."
            )
        images[kept] = decode_face(face["image"], image_size, f"{path}: face {face['id']!r}")
        tags[kept] = face["tags"]
        kept += 1
    if kept == 0:
        what = "tagged faces" if not allow_untagged else "faces"
        raise ValueError(f"No {what} in the shards at {path_or_pattern!r}.")
    if kept < total:
        images.resize((kept, image_size, image_size, 3), refcheck=False)
        tags = tags[:kept].copy()
    return images, tags


def load_source(data, image_size: int, num_tags: int, allow_untagged: bool = True,
                progress: bool = False):  # fmt: skip
    """The faces of a recipe's `data` section (`tfrecord` or `tfds`) as in-memory arrays.

    `tfrecord` reads the shards at `data.path` (`load_arrays`); `tfds` reads the
    `kanime_faces` TFDS builder over the manual folder `data.path`
    (`kanime.data.tfds.source.load_tfds_arrays`).

    Returns:
        `(images, tags)`: uint8 `(n, s, s, 3)` and float32 `(n, num_tags)`.

    Raises:
        RecipeError: nothing readable at `data.path`, or records with another tag count.
    """
    if data.source == "tfds":
        try:
            images, tags = load_tfds_arrays(
                data.path, image_size, allow_untagged, progress, data_dir=data.tfds_dir
            )
        except (ValueError, FileNotFoundError) as e:
            raise RecipeError(f"data.path (data.source: tfds): {e}") from e
    else:
        check_prepared(data.path)
        images, tags = load_arrays(data.path, image_size, allow_untagged, progress=progress)
    if tags.shape[1] != num_tags:
        raise RecipeError(
            f"data.path: the records carry {tags.shape[1]} tags; the recipe's vocabulary "
            f"has {num_tags}."
        )
    return images, tags
