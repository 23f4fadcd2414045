"""The on-disk format of kanime's real-face datasets: TFRecord shards of `tf.train.Example`s.

One record holds one face. Its features:

| key      | type        | meaning                                                      |
| -------- | ----------- | ------------------------------------------------------------ |
| `id`     | bytes       | the face's id (UTF-8 text)                                   |
| `image`  | bytes       | JPEG of the square RGB face crop                             |
| `tags`   | float list  | multi-hot tags, one value per tag of the vocabulary          |
| `tagged` | int64       | 1 when the face has tags, 0 when it is untagged              |
| `source` | bytes       | the source image's path (UTF-8 text)                         |
| `box`    | int64 x 4   | `x, y, w, h` of the grown face box in the source; -1 unknown |
| `year`   | int64       | the year of the source image; -1 when unknown                |

The records are read and written with libraries, not by hand: the `tf.train.Example`
message by `protobuf` (the schema, which is TensorFlow's `example.proto`, is declared
below in a private descriptor pool, so it works with and without TensorFlow installed),
the checksums by `google-crc32c`. `kanime.data.pipeline.make_dataset` reads the same
shards with `tf.data`; `iter_records` + `decode_example` read them on any backend.
Importing this module does not import TensorFlow.

Shards are named `<prefix>-NNNNN.tfrecord`; `ShardWriter` writes them, each
under a temporary name renamed into place when the shard is complete.

Examples:
    >>> record = encode_example("a1", b"\\xff\\xd8jpeg", [1, 0], 1, "src/a.png")
    >>> decode_example(record)["tags"].tolist()
    [1.0, 0.0]
"""

from __future__ import annotations

import glob
import os
import struct
from collections.abc import Iterable, Iterator, Sequence

import google_crc32c
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory

FEATURE_KEYS = ("id", "image", "tags", "tagged", "source", "box", "year")
"""The feature keys of one face record, in the order of the table above."""

UNKNOWN_BOX = (-1, -1, -1, -1)
SHARD_SUFFIX = ".tfrecord"
_PREPARE_HINT = "Write the shards with `kanime prepare SRC OUT`."

# --- CRC32C (Castagnoli) ------------------------------------------------------------------

_MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of `data`, as TFRecord files use it (`google-crc32c`).

    Examples:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
    """
    return google_crc32c.value(bytes(data))


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of `data` stored in TFRecord files."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- tf.train.Example: the schema ----------------------------------------------------------


def _example_message():
    """The `Example` message class of TensorFlow's `example.proto` (the same field numbers and
    types, so the same bytes), declared in a private pool that cannot clash with TensorFlow's."""
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="kanime/example.proto", package="kanime", syntax="proto3"
    )

    def field(name, number, kind, type_name=None, repeated=False, **more):
        label = F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL
        if type_name:  # message fields only: a set type_name on a scalar is refused
            more["type_name"] = type_name
        return {"name": name, "number": number, "type": kind, "label": label, **more}

    def add_message(name, *fields, parent=file.message_type):
        proto = parent.add(name=name)
        for spec in fields:
            proto.field.add(**spec)
        return proto

    for name, kind in [("Bytes", F.TYPE_BYTES), ("Float", F.TYPE_FLOAT), ("Int64", F.TYPE_INT64)]:
        add_message(f"{name}List", field("value", 1, kind, repeated=True))  # proto3: packed
    feature = add_message("Feature", *(
        field(f"{name.lower()}_list", i + 1, F.TYPE_MESSAGE, f".kanime.{name}List", oneof_index=0)
        for i, name in enumerate(["Bytes", "Float", "Int64"])
    ))  # fmt: skip
    feature.oneof_decl.add(name="kind")
    features = add_message(
        "Features",
        field("feature", 1, F.TYPE_MESSAGE, ".kanime.Features.FeatureEntry", repeated=True),
    )
    entry = add_message(
        "FeatureEntry",
        field("key", 1, F.TYPE_STRING),
        field("value", 2, F.TYPE_MESSAGE, ".kanime.Feature"),
        parent=features.nested_type,
    )
    entry.options.map_entry = True
    add_message("Example", field("features", 1, F.TYPE_MESSAGE, ".kanime.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kanime.Example"))


Example = _example_message()
"""TensorFlow's `tf.train.Example` message, from `protobuf` (without TensorFlow)."""


# --- tf.train.Example: encoding and decoding ------------------------------------------------


def encode_example(
    face_id: str,
    jpeg_bytes: bytes,
    tags,
    tagged: int,
    source: str,
    box: Sequence[int] = UNKNOWN_BOX,
    year: int = -1,
) -> bytes:
    """One face as a serialized `tf.train.Example`.

    Args:
        face_id: the face's id.
        jpeg_bytes: JPEG of the square RGB face crop.
        tags: the multi-hot tags, one value per tag of the vocabulary.
        tagged: 1 when the face has tags, 0 when it is untagged.
        source: the source image's path.
        box: `(x, y, w, h)` of the grown face box in the source image; -1s when unknown.
        year: the year of the source image; -1 when unknown.

    Returns:
        The serialized example, ready for `ShardWriter.write`.

    Examples:
        >>> record = encode_example("a1", b"\\xff\\xd8jpeg", [1, 0, 0.5], 1, "src/a.png")
        >>> face = decode_example(record)
        >>> face["id"], face["tags"].tolist(), face["box"], face["year"]
        ('a1', [1.0, 0.0, 0.5], (-1, -1, -1, -1), -1)
    """
    jpeg_bytes = bytes(jpeg_bytes)
    if not jpeg_bytes.startswith(b"\xff\xd8"):
        raise ValueError(
            f"Face {face_id!r}: `jpeg_bytes` is not a JPEG (it should start with FF D8). "
            f"Received {len(jpeg_bytes)} bytes starting with {jpeg_bytes[:8]!r}"
        )
    tags = np.asarray(tags, dtype=np.float32)
    if tags.ndim != 1:
        raise ValueError(f"Face {face_id!r}: `tags` must be 1-D. Received shape {tags.shape}")
    box = tuple(int(v) for v in box)
    if len(box) != 4:
        raise ValueError(f"Face {face_id!r}: `box` must be (x, y, w, h). Received: {box}")
    tagged = int(tagged)
    if tagged not in (0, 1):
        raise ValueError(f"Face {face_id!r}: `tagged` must be 0 or 1. Received: {tagged}")

    example = Example()
    feature = example.features.feature
    feature["id"].bytes_list.value.append(str(face_id).encode("utf-8"))
    feature["image"].bytes_list.value.append(jpeg_bytes)
    feature["tags"].float_list.value.extend(tags.tolist())
    feature["tagged"].int64_list.value.append(tagged)
    feature["source"].bytes_list.value.append(os.fspath(source).encode("utf-8"))
    feature["box"].int64_list.value.extend(box)
    feature["year"].int64_list.value.append(int(year))
    return example.SerializeToString()


def decode_example(serialized: bytes) -> dict:
    """Decodes one face record (no TensorFlow needed).

    Args:
        serialized: the bytes of one record, as written by `encode_example`.

    Returns:
        `{"id": str, "image": bytes, "tags": float32 array, "tagged": int,
        "source": str, "box": (x, y, w, h), "year": int}`. Features missing from the
        record get defaults (`""`, empty tags, `tagged=0`, `-1` box and year),
        except `image`, which is required.

    Examples:
        >>> # A hand-written record: {"image": bytes_list [b"\\xff\\xd8"]}
        >>> feature = b"\\x0a\\x04\\x0a\\x02\\xff\\xd8"
        >>> entry = b"\\x0a\\x05image\\x12" + bytes([len(feature)]) + feature
        >>> features = b"\\x0a" + bytes([len(entry)]) + entry
        >>> face = decode_example(b"\\x0a" + bytes([len(features)]) + features)
        >>> face["image"], face["box"], face["tagged"]
        (b'\\xff\\xd8', (-1, -1, -1, -1), 0)
    """
    try:
        features = Example.FromString(bytes(serialized)).features.feature
    except message.DecodeError as error:
        raise ValueError(f"Not a valid tf.train.Example: {error}") from None

    def get(key, kind, default):
        got = features[key].WhichOneof("kind") if key in features else None
        if got is None:
            return default
        if got != f"{kind}_list":
            raise ValueError(
                f"Feature {key!r} should be a {kind} list. Received a {got.split('_')[0]} list"
            )
        return list(getattr(features[key], got).value) or default

    image = get("image", "bytes", [])
    if not image:
        raise ValueError(f"The record has no 'image' feature. Received keys: {sorted(features)}")
    box = get("box", "int64", list(UNKNOWN_BOX))
    if len(box) != 4:
        raise ValueError(f"Feature 'box' should hold 4 values. Received: {box}")
    return {
        "id": b"".join(get("id", "bytes", [b""])[:1]).decode("utf-8"),
        "image": image[0],
        "tags": np.asarray(get("tags", "float", []), dtype=np.float32),
        "tagged": int(get("tagged", "int64", [0])[0]),
        "source": b"".join(get("source", "bytes", [b""])[:1]).decode("utf-8"),
        "box": tuple(int(v) for v in box),
        "year": int(get("year", "int64", [-1])[0]),
    }


# --- the TFRecord container -----------------------------------------------------------------


def _frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return b"".join(
        (
            length,
            struct.pack("<I", masked_crc32c(length)),
            record,
            struct.pack("<I", masked_crc32c(record)),
        )
    )


def iter_records(path, verify: bool = True) -> Iterator[bytes]:
    """The records of one TFRecord file, read in pure Python.

    Each record is framed as `uint64 length, uint32 masked CRC of the length, data,
    uint32 masked CRC of the data` (little-endian); both checksums are verified.

    Args:
        path: the TFRecord file (uncompressed).
        verify: check the CRC-32C of every length and record.

    Yields:
        The bytes of each record, in file order.

    Raises:
        ValueError: the file is truncated or corrupt; the message names the file
            and the byte offset of the bad record.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        offset = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(
                    f"{path}: truncated record header at byte {offset} ({len(header)} of 12 bytes)."
                )
            length, length_crc = struct.unpack("<QI", header)
            if verify and masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{path}: corrupt record length at byte {offset} (bad CRC).")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError(
                    f"{path}: truncated record at byte {offset} "
                    f"(expected {length} bytes of data and a 4-byte CRC)."
                )
            if verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{path}: corrupt record data at byte {offset} (bad CRC).")
            yield data
            offset += 16 + length


def count_records(path_or_pattern) -> int:
    """The number of records in the shards at `path_or_pattern` (see `list_shards`).

    Reads only the record headers (their length checksums are verified).
    """
    total = 0
    for path in list_shards(path_or_pattern):
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while offset < size:
                header = f.read(12)
                if len(header) < 12:
                    raise ValueError(f"{path}: truncated record header at byte {offset}.")
                length, length_crc = struct.unpack("<QI", header)
                if masked_crc32c(header[:8]) != length_crc:
                    raise ValueError(f"{path}: corrupt record length at byte {offset} (bad CRC).")
                offset += 16 + length
                if offset > size:
                    raise ValueError(f"{path}: truncated record at byte {offset - 16 - length}.")
                f.seek(offset)
                total += 1
    return total


def list_shards(path_or_pattern) -> list[str]:
    """The TFRecord shards named by a folder, a glob pattern or a file, sorted.

    Args:
        path_or_pattern: a folder (all its `*.tfrecord` files), a glob pattern
            (`"data/faces-*.tfrecord"`), a single file, or a list of these.

    Returns:
        The sorted, de-duplicated shard paths.

    Raises:
        FileNotFoundError: nothing matches; the message says how to make the shards.
    """
    if isinstance(path_or_pattern, (list, tuple)):
        found = sorted({p for item in path_or_pattern for p in list_shards(item)})
        if not found:
            raise FileNotFoundError(f"No TFRecord shards given. {_PREPARE_HINT}")
        return found
    path = os.fspath(path_or_pattern)
    if os.path.isdir(path):
        found = glob.glob(os.path.join(glob.escape(path), "*" + SHARD_SUFFIX))
        where = f"in the folder {path!r}"
    elif os.path.isfile(path):
        found = [path]
        where = ""
    else:
        found = [p for p in glob.glob(path) if os.path.isfile(p)]
        where = f"at {path!r}"
    if not found:
        raise FileNotFoundError(
            f"No TFRecord shards (*{SHARD_SUFFIX}) found {where}. {_PREPARE_HINT}"
        )
    return sorted(found)


class ShardWriter:
    """Writes records into numbered TFRecord shards, each renamed into place when complete.

    Shard `i` is `<folder>/<prefix>-<i:05d>.tfrecord`. A shard is written to a hidden
    temporary file beside it and renamed to its final name once it holds
    `shard_size` records (or on `close`), so a killed process never leaves half
    a shard under a shard name. Writing is pure Python (no TensorFlow).

    Args:
        folder: where the shards go; created if missing.
        prefix: the start of the shard names.
        shard_size: the most records in one shard.
        start_index: the number of the first shard; a resumed writer passes the
            number of shards already written.
        overwrite: replace existing shards; when False, reaching the name of an
            existing shard raises a `FileExistsError`.

    Attributes:
        written: paths of the finished shards, in order.
        num_records: records written so far (in finished and open shards).

    Examples:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> with ShardWriter(folder, shard_size=2) as writer:
        ...     for i in range(5):
        ...         writer.write(b"record %d" % i)
        >>> [os.path.basename(p) for p in writer.written]
        ['faces-00000.tfrecord', 'faces-00001.tfrecord', 'faces-00002.tfrecord']
        >>> [list(iter_records(p)) for p in list_shards(folder)][-1]
        [b'record 4']
    """

    def __init__(
        self,
        folder,
        prefix: str = "faces",
        shard_size: int = 1024,
        start_index: int = 0,
        overwrite: bool = False,
    ):
        if int(shard_size) < 1:
            raise ValueError(f"`shard_size` must be at least 1. Received: {shard_size}")
        if int(start_index) < 0:
            raise ValueError(f"`start_index` must be non-negative. Received: {start_index}")
        self.folder = os.fspath(folder)
        self.prefix = prefix
        self.shard_size = int(shard_size)
        self.index = int(start_index)
        self.overwrite = overwrite
        self.written: list[str] = []
        self.num_records = 0
        self._file = None
        self._tmp = None
        self._count = 0
        self._closed = False
        os.makedirs(self.folder, exist_ok=True)

    def shard_path(self, index: int) -> str:
        """The final path of shard `index`."""
        return os.path.join(self.folder, f"{self.prefix}-{index:05d}{SHARD_SUFFIX}")

    def _open(self):
        final = self.shard_path(self.index)
        if not self.overwrite and os.path.exists(final):
            raise FileExistsError(
                f"Shard {final} already exists. Pass start_index after the last existing "
                "shard to add shards, or overwrite=True to replace them."
            )
        self._tmp = os.path.join(self.folder, f".{os.path.basename(final)}.{os.getpid()}.tmp")
        self._file = open(self._tmp, "wb")
        self._count = 0

    def _finish(self):
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        final = self.shard_path(self.index)
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, final)
        self._tmp = None
        self.written.append(final)
        self.index += 1

    def write(self, serialized: bytes) -> None:
        """Appends one serialized record (e.g. from `encode_example`)."""
        if self._closed:
            raise ValueError("This ShardWriter is closed.")
        if self._file is None:
            self._open()
        self._file.write(_frame(bytes(serialized)))
        self._count += 1
        self.num_records += 1
        if self._count >= self.shard_size:
            self._finish()

    def write_all(self, records: Iterable[bytes]) -> None:
        """Writes every record of `records`."""
        for record in records:
            self.write(record)

    def close(self) -> None:
        """Finishes the open shard, if any (it may hold fewer than `shard_size` records)."""
        if self._file is not None:
            self._finish()
        self._closed = True

    def abort(self) -> None:
        """Drops the open shard (its temporary file); finished shards stay."""
        if self._file is not None:
            self._file.close()
            self._file = None
            if os.path.exists(self._tmp):
                os.remove(self._tmp)
            self._tmp = None
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # On an error the open shard is dropped, so that every finished shard but the
        # last holds exactly `shard_size` records and a resume can count them.
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def __repr__(self) -> str:
        return (
            f"ShardWriter({self.folder!r}, prefix={self.prefix!r}, shard_size={self.shard_size}, "
            f"{len(self.written)} shards written)"
        )
