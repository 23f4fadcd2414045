"""The TFRecord face format: encoding, decoding without TensorFlow, the container, shards."""

import os
import struct
import tempfile

import cv2
import numpy as np
import pytest

from kanime.data import tfrecords
from kanime.data.tfrecords import (
    ShardWriter,
    count_records,
    crc32c,
    decode_example,
    encode_example,
    iter_records,
    list_shards,
    masked_crc32c,
)


def jpeg(seed, size=16):
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    return data.tobytes()


# --- CRC32C -------------------------------------------------------------------------------


def test_crc32c_known_values():
    # RFC 3720 (iSCSI) test vectors and the classic check value.
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E
    assert crc32c(bytes(range(31, -1, -1))) == 0x113FDB5C


def test_crc32c_of_long_inputs_matches_tensorflow():
    import tensorflow as tf

    data = np.random.default_rng(0).integers(0, 256, 200_003, dtype=np.uint8).tobytes()
    # TensorFlow's own TFRecord writer checksums the record: its trailing masked CRC is ours.
    path = os.path.join(tempfile.mkdtemp(), "one.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(data)
    with open(path, "rb") as f:
        assert struct.unpack("<I", f.read()[-4:])[0] == masked_crc32c(data)


def test_masked_crc32c():
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32)


# --- tf.train.Example ---------------------------------------------------------------------


def test_encode_then_pure_python_decode_is_exact():
    rng = np.random.default_rng(0)
    tags = rng.normal(size=34).astype(np.float32)
    image = jpeg(1)
    record = encode_example(
        "face-é/7", image, tags, 1, "src/日本/a.png", box=(-5, 10, 2**40, -1), year=-2015
    )
    face = decode_example(record)
    assert set(face) == set(tfrecords.FEATURE_KEYS)
    assert face["id"] == "face-é/7"
    assert face["image"] == image
    assert face["tags"].dtype == np.float32
    np.testing.assert_array_equal(face["tags"], tags)
    assert face["tagged"] == 1
    assert face["source"] == "src/日本/a.png"
    assert face["box"] == (-5, 10, 2**40, -1)
    assert face["year"] == -2015


def test_decode_matches_tensorflow_parsing():
    import tensorflow as tf

    record = encode_example("x", jpeg(2), [0.0, 1.0, 0.25], 0, "s", box=(1, 2, 3, 4), year=2009)
    example = tf.train.Example.FromString(record)
    face = decode_example(record)
    f = example.features.feature
    assert face["tags"].tolist() == list(f["tags"].float_list.value)
    assert face["box"] == tuple(f["box"].int64_list.value)
    assert face["tagged"] == f["tagged"].int64_list.value[0] == 0
    assert face["year"] == 2009


def test_encode_defaults_and_validation():
    face = decode_example(encode_example("a", jpeg(3), np.zeros(34), 0, "s"))
    assert face["box"] == (-1, -1, -1, -1) and face["year"] == -1 and face["tagged"] == 0
    with pytest.raises(ValueError, match="not a JPEG"):
        encode_example("a", b"\x89PNG", np.zeros(34), 1, "s")
    with pytest.raises(ValueError, match="box"):
        encode_example("a", jpeg(3), np.zeros(34), 1, "s", box=(1, 2, 3))
    with pytest.raises(ValueError, match="tagged"):
        encode_example("a", jpeg(3), np.zeros(34), 2, "s")


# A tiny protobuf writer, to make records that TensorFlow does not write: unpacked repeated
# fields, unknown fields, features in another order.


def varint(n):
    n &= 2**64 - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def entry(key, feature):
    return field(1, 2, field(1, 2, key.encode()) + field(2, 2, feature))


def test_decode_unpacked_fields_unknown_fields_and_negative_varints():
    assert varint(-1) == b"\xff" * 9 + b"\x01"  # 10-byte two's complement
    floats = b"".join(field(1, 5, struct.pack("<f", v)) for v in (0.5, -2.0, 1.0))
    ints = b"".join(field(1, 0, varint(v)) for v in (-1, 7, -(2**63), 2**63 - 1))
    feature_map = b"".join(
        [
            entry("tags", field(2, 2, floats)),
            entry("box", field(3, 2, ints)),
            field(9, 0, varint(5)),  # unknown field inside Features
            entry("year", field(3, 2, field(1, 2, varint(-3)))),  # packed, negative
            entry("image", field(1, 2, field(1, 2, b"\xff\xd8abc"))),
            entry("id", field(1, 2, field(1, 2, b"unpacked"))),
            entry("extra", field(3, 2, field(1, 0, varint(1)))),  # unknown feature
            entry("tagged", field(3, 2, field(1, 0, varint(1)) + field(7, 1, bytes(8)))),
        ]
    )
    record = field(1, 2, feature_map) + field(5, 5, b"\x00\x00\x00\x00")
    face = decode_example(record)
    assert face["tags"].tolist() == [0.5, -2.0, 1.0]
    assert face["box"] == (-1, 7, -(2**63), 2**63 - 1)
    assert face["year"] == -3
    assert face["image"] == b"\xff\xd8abc"
    assert (face["id"], face["tagged"], face["source"]) == ("unpacked", 1, "")


def test_decode_rejects_bad_records():
    record = encode_example("a", jpeg(4), np.ones(34), 1, "s")
    with pytest.raises(ValueError, match="tf.train.Example"):
        decode_example(record[:-7])
    with pytest.raises(ValueError, match="image"):
        decode_example(field(1, 2, entry("id", field(1, 2, field(1, 2, b"x")))))
    with pytest.raises(ValueError, match="float"):
        decode_example(
            field(1, 2, entry("image", field(1, 2, field(1, 2, b"\xff\xd8"))))
            + field(1, 2, entry("tags", field(3, 2, field(1, 2, varint(1)))))
        )


def test_damaged_records_raise_value_errors_only():
    record = encode_example("a", jpeg(5), np.arange(34) / 3, 1, "src", box=(1, -2, 3, 4))
    rng = np.random.default_rng(0)
    for _ in range(2000):
        damaged = bytearray(record)
        for _ in range(rng.integers(1, 4)):
            damaged[rng.integers(len(damaged))] = rng.integers(256)
        if rng.random() < 0.3:
            damaged = damaged[: rng.integers(len(damaged))]
        try:
            decode_example(bytes(damaged))
        except ValueError:
            pass


# --- the container ------------------------------------------------------------------------


def sample_records():
    rng = np.random.default_rng(5)
    sizes = [0, 1, 100, 511, 512, 3000, 70000]
    return [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]


def test_iter_records_matches_tensorflow(tmp_path):
    import tensorflow as tf

    records = sample_records()
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for r in records:
            writer.write(r)
    assert list(iter_records(path)) == records
    assert [x.numpy() for x in tf.data.TFRecordDataset(path)] == records
    assert count_records(path) == len(records)


def test_shard_writer_output_is_read_by_tensorflow(tmp_path):
    import tensorflow as tf

    records = sample_records()
    with ShardWriter(tmp_path, shard_size=100) as writer:
        writer.write_all(records)
    (path,) = writer.written
    with open(path, "rb") as f:
        tf_path = tmp_path / "tf.tfrecord"
        with tf.io.TFRecordWriter(str(tf_path)) as w:
            for r in records:
                w.write(r)
        assert f.read() == tf_path.read_bytes()  # byte-identical to TensorFlow's writer
    assert [x.numpy() for x in tf.data.TFRecordDataset(path)] == records


def write_shard(path, records):
    with open(path, "wb") as f:
        for r in records:
            f.write(tfrecords._frame(r))


def test_truncated_or_corrupt_shards_raise_with_file_and_offset(tmp_path):
    records = [b"a" * 10, b"b" * 600, b"c" * 20]
    good = tmp_path / "good.tfrecord"
    write_shard(good, records)
    data = good.read_bytes()
    second = 16 + 10  # byte offset of the second record

    for cut in (len(data) - 1, len(data) - 20, second + 5):
        bad = tmp_path / f"cut{cut}.tfrecord"
        bad.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"cut\d+\.tfrecord: truncated") as info:
            list(iter_records(bad))
        assert "byte" in str(info.value)

    flipped = bytearray(data)
    flipped[second + 12 + 300] ^= 1  # inside the second record's data
    bad = tmp_path / "flipped.tfrecord"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(
        ValueError, match=rf"flipped\.tfrecord: corrupt record data at byte {second}"
    ):
        list(iter_records(bad))
    assert len(list(iter_records(bad, verify=False))) == 3

    flipped = bytearray(data)
    flipped[second + 1] ^= 1  # the second record's length
    bad.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=rf"corrupt record length at byte {second}"):
        list(iter_records(bad))
    with pytest.raises(ValueError, match="corrupt record length"):
        count_records(bad)


# --- shards -------------------------------------------------------------------------------


def test_shard_writer_splits_numbers_and_leaves_no_temporary_files(tmp_path):
    records = [b"record %d" % i for i in range(10)]
    with ShardWriter(tmp_path, prefix="getchu", shard_size=4) as writer:
        for r in records[:6]:
            writer.write(r)
        # a finished shard is in place, the open one is not
        assert sorted(os.listdir(tmp_path))[-1] == "getchu-00000.tfrecord"
        writer.write_all(records[6:])
    names = [f"getchu-{i:05d}.tfrecord" for i in range(3)]
    assert sorted(os.listdir(tmp_path)) == names
    assert writer.written == [str(tmp_path / n) for n in names]
    assert [len(list(iter_records(p))) for p in writer.written] == [4, 4, 2]
    assert [r for p in list_shards(tmp_path) for r in iter_records(p)] == records
    assert writer.num_records == 10

    with ShardWriter(tmp_path, prefix="getchu", shard_size=4, start_index=3) as more:
        more.write_all([b"x"] * 5)
    assert [os.path.basename(p) for p in more.written] == [
        "getchu-00003.tfrecord",
        "getchu-00004.tfrecord",
    ]
    assert count_records(tmp_path) == 15
    assert not [n for n in os.listdir(tmp_path) if not n.endswith(".tfrecord")]

    with pytest.raises(FileExistsError, match="start_index"):
        with ShardWriter(tmp_path, prefix="getchu", shard_size=4) as again:
            again.write(b"y")
    with ShardWriter(tmp_path, prefix="getchu", shard_size=4, overwrite=True) as again:
        again.write(b"y")
    assert list(iter_records(tmp_path / names[0])) == [b"y"]


def test_shard_writer_drops_the_open_shard_on_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, shard_size=3) as writer:
            writer.write_all([b"1", b"2", b"3", b"4"])
            raise RuntimeError("killed")
    assert os.listdir(tmp_path) == ["faces-00000.tfrecord"]
    with pytest.raises(ValueError, match="closed"):
        writer.write(b"5")


def test_list_shards(tmp_path):
    for name in ("b-00001.tfrecord", "a-00000.tfrecord", "notes.txt", ".hidden.tfrecord.tmp"):
        (tmp_path / name).write_bytes(b"")
    a, b = str(tmp_path / "a-00000.tfrecord"), str(tmp_path / "b-00001.tfrecord")
    assert list_shards(tmp_path) == [a, b]
    assert list_shards(str(tmp_path / "b-*.tfrecord")) == [b]
    assert list_shards(b) == [b]
    assert list_shards([b, str(tmp_path)]) == [a, b]
    for missing in (tmp_path / "nope", tmp_path / "c-*.tfrecord", tmp_path / "sub"):
        if missing.name == "sub":
            missing.mkdir()
        with pytest.raises(FileNotFoundError, match="kanime prepare SRC OUT") as info:
            list_shards(missing)
        assert str(missing) in str(info.value)
