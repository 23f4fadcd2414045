"""The input pipelines: `make_dataset` (tf.data) and `load_arrays` (no TensorFlow)."""

import cv2
import numpy as np
import pytest
from conftest import BLOCK_TENSORFLOW, run_python

from kanime.data.pipeline import load_arrays, make_dataset
from kanime.data.procedural import make_faces
from kanime.data.tfrecords import ShardWriter, encode_example, list_shards

N = 40
SIZE = 32


def write_faces(folder, size, n=N, shard_size=16, seed=0):
    """Procedural faces as shards; every 5th face is untagged (all-zero tags)."""
    images, tags = make_faces(n, size, seed=seed)
    tagged = np.array([i % 5 != 3 for i in range(n)])
    tags = tags * tagged[:, None]
    with ShardWriter(folder, shard_size=shard_size) as writer:
        for i in range(n):
            ok, data = cv2.imencode(".jpg", images[i][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            writer.write(encode_example(f"f{i}", data.tobytes(), tags[i], int(tagged[i]), "src"))
    return images, tags, tagged


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    images, tags, tagged = write_faces(folder, SIZE)
    return folder, images, tags, tagged


@pytest.fixture(params=[True, False], ids=["cached", "streamed"])
def cache(request):
    """Both paths of `make_dataset`: decoded once and kept in memory, or decoded every pass."""
    return request.param


def collect(dataset, limit=None):
    images, tags = [], []
    for i, (x, t) in enumerate(dataset):
        if limit is not None and i >= limit:
            break
        images.append(x.numpy())
        tags.append(t.numpy())
    return np.concatenate(images), np.concatenate(tags)


def in_order(path, batch_size, image_size, **kwargs):
    """A single shard read in file order, without flips."""
    kwargs = {"shuffle": False, "flip": False, "repeat": False, "seed": 0, **kwargs}
    return make_dataset(path, batch_size, image_size, **kwargs)


def test_shapes_dtypes_range_and_tags(shards, cache):
    folder, images, tags, _ = shards
    first = list_shards(folder)[0]
    dataset = in_order(first, 8, SIZE, cache=cache)
    spec = dataset.element_spec
    assert tuple(spec[0].shape) == (8, SIZE, SIZE, 3) and tuple(spec[1].shape) == (8, 34)
    x, t = collect(dataset)
    assert x.shape == (16, SIZE, SIZE, 3) and x.dtype == np.float32
    assert t.shape == (16, 34) and t.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.5 and x.max() > 0.5
    levels = np.round((x + 1) * 127.5)  # the values are uint8 / 127.5 - 1
    np.testing.assert_allclose(x, levels.astype(np.float32) / 127.5 - 1, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(t, tags[:16])
    # the images are the written faces, up to JPEG compression (chroma subsampling at 32x32)
    assert np.abs((x + 1) * 127.5 - images[:16]).mean() < 10


def test_all_shards_are_read_once_per_pass(shards, cache):
    folder, _, tags, _ = shards
    dataset = make_dataset(folder, 8, SIZE, cache=cache, seed=1, repeat=False, drop_remainder=False)
    assert dataset.element_spec[0].shape[0] is None
    _, t = collect(dataset)
    assert len(t) == N
    np.testing.assert_array_equal(np.unique(t, axis=0), np.unique(tags, axis=0))
    assert sorted(map(tuple, t)) == sorted(map(tuple, tags))


def test_seeded_datasets_are_deterministic(shards, cache):
    folder = shards[0]
    a, ta = collect(make_dataset(folder, 8, SIZE, cache=cache, seed=7, shuffle_buffer=64), limit=3)
    b, tb = collect(make_dataset(folder, 8, SIZE, cache=cache, seed=7, shuffle_buffer=64), limit=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    c, tc = collect(make_dataset(folder, 8, SIZE, cache=cache, seed=8, shuffle_buffer=64), limit=3)
    assert not np.array_equal(a, c)
    assert make_dataset(folder, 8, SIZE, cache=cache, seed=7).options().deterministic
    assert not make_dataset(folder, 8, SIZE, cache=cache).options().deterministic


def test_repeat_gives_endless_reshuffled_passes(shards, cache):
    folder = shards[0]
    _, t = collect(
        make_dataset(folder, 10, SIZE, cache=cache, seed=3, flip=False), limit=8
    )  # 2 passes
    first, second = t[:N], t[N:]
    assert sorted(map(tuple, first)) == sorted(map(tuple, second))
    assert not np.array_equal(first, second)


def test_flips_are_horizontal_and_random(shards, cache):
    folder = shards[0]
    first = list_shards(folder)[0]
    plain, _ = collect(in_order(first, 16, SIZE, cache=cache))
    flipped, _ = collect(in_order(first, 16, SIZE, flip=True, cache=cache))
    same = np.all(flipped == plain, axis=(1, 2, 3))
    mirrored = np.all(flipped == plain[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(same | mirrored)
    assert same.any() and mirrored.any()


def test_allow_untagged_false_drops_untagged_records(shards, cache):
    folder, _, tags, tagged = shards
    kwargs = {"shuffle": False, "flip": False, "repeat": False, "drop_remainder": False}
    _, t = collect(make_dataset(folder, 8, SIZE, cache=cache, allow_untagged=False, **kwargs))
    assert len(t) == tagged.sum() < N
    assert (t.sum(axis=1) > 0).all()
    assert sorted(map(tuple, t)) == sorted(map(tuple, tags[tagged]))


def test_images_are_resized_when_the_stored_size_differs(tmp_path):
    images, _, _ = write_faces(tmp_path, 48, n=8)
    x, _ = collect(in_order(tmp_path, 4, SIZE))
    assert x.shape == (8, SIZE, SIZE, 3)
    expected = np.stack(
        [cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in images]
    )
    assert np.abs((x + 1) * 127.5 - expected).mean() < 10  # JPEG error included
    arrays, _ = load_arrays(tmp_path, SIZE)  # OpenCV's decoder and cv2.INTER_AREA
    assert arrays.shape == (8, SIZE, SIZE, 3)
    assert np.abs((x + 1) * 127.5 - arrays).mean() < 2
    bigger, _ = load_arrays(tmp_path, 64)  # cv2.INTER_LINEAR
    y, _ = collect(in_order(tmp_path, 4, 64))
    assert bigger.shape == y.shape[:1] + (64, 64, 3)
    assert np.abs((y + 1) * 127.5 - bigger).mean() < 2


def test_the_cache_is_chosen_by_the_decoded_size(shards):
    folder, _, tags, _ = shards
    kwargs = {"seed": 0, "flip": False, "repeat": False, "drop_remainder": False}
    # N faces of SIZE x SIZE x 3 bytes: under the limit they are cached, over it streamed;
    # either way one pass holds every face once.
    for limit in (N * SIZE * SIZE * 3, N * SIZE * SIZE * 3 - 1):
        _, t = collect(make_dataset(folder, 8, SIZE, cache_limit_bytes=limit, **kwargs))
        assert sorted(map(tuple, t)) == sorted(map(tuple, tags))
    cached = make_dataset(folder, 8, SIZE, cache_limit_bytes=N * SIZE * SIZE * 3)
    streamed = make_dataset(folder, 8, SIZE, cache_limit_bytes=N * SIZE * SIZE * 3 - 1)
    assert "CacheDatasetV2" in _ops(cached) and "CacheDatasetV2" not in _ops(streamed)


def _ops(dataset):
    import tensorflow as tf

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(dataset._as_serialized_graph().numpy())
    return {node.op for node in graph.node}


def test_bad_path_and_wrong_tag_count(shards, tmp_path):
    with pytest.raises(FileNotFoundError, match="kanime prepare SRC OUT"):
        make_dataset(tmp_path / "missing", 8, SIZE)
    with pytest.raises(FileNotFoundError, match="kanime prepare SRC OUT"):
        load_arrays(tmp_path / "missing", SIZE)
    with pytest.raises(ValueError, match="num_tags=10"):
        make_dataset(shards[0], 8, SIZE, num_tags=10)


def test_load_arrays_equals_make_dataset(shards):
    folder, images, tags, tagged = shards
    arrays, arrays_tags = load_arrays(folder, SIZE, progress=True)
    assert arrays.shape == (N, SIZE, SIZE, 3) and arrays.dtype == np.uint8
    assert arrays_tags.shape == (N, 34) and arrays_tags.dtype == np.float32
    np.testing.assert_array_equal(arrays_tags, tags)  # shard order is face order
    for path, start in zip(list_shards(folder), (0, 16, 32)):
        x, t = collect(in_order(path, 8, SIZE, drop_remainder=False))
        stop = start + len(t)
        np.testing.assert_array_equal(t, arrays_tags[start:stop])
        assert np.abs((x + 1) * 127.5 - arrays[start:stop]).mean() < 2
    assert np.abs(arrays.astype(float) - images).mean() < 10

    only_tagged, only_tags = load_arrays(folder, SIZE, allow_untagged=False)
    assert len(only_tagged) == len(only_tags) == tagged.sum()
    np.testing.assert_array_equal(only_tagged, arrays[tagged])
    np.testing.assert_array_equal(only_tags, tags[tagged])


def test_load_arrays_needs_no_tensorflow(shards):
    folder = shards[0]
    code = (
        BLOCK_TENSORFLOW
        + f"""
try:
    import tensorflow
    raise SystemExit("tensorflow imported")
except ImportError:
    pass
from kanime.data.pipeline import load_arrays
from kanime.data.tfrecords import count_records
images, tags = load_arrays({str(folder)!r}, 16, allow_untagged=False)
assert not [m for m in sys.modules if m.startswith("tensorflow")]
print("ok", images.shape, images.dtype, tags.shape, count_records({str(folder)!r}))
"""
    )
    out = run_python(code, backend="jax").stdout
    assert f"ok ({N * 4 // 5}, 16, 16, 3) uint8 ({N * 4 // 5}, 34) {N}" in out
