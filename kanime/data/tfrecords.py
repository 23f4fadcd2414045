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

Writing (`encode_example`) uses TensorFlow, imported when called. Reading has two
paths: `kanime.data.pipeline.make_dataset` reads with `tf.data`, and
`iter_records` + `decode_example` read in pure Python (no TensorFlow and no
protobuf package), for backends that train without TensorFlow. Importing this
module does not import TensorFlow.

Shards are named `<prefix>-NNNNN.tfrecord`; `ShardWriter` writes them, each
under a temporary name renamed into place when the shard is complete.

Examples:
    >>> crc32c(b"123456789") == 0xE3069283
    True
"""

from __future__ import annotations

import glob
import os
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

FEATURE_KEYS = ("id", "image", "tags", "tagged", "source", "box", "year")
"""The feature keys of one face record, in the order of the table above."""

UNKNOWN_BOX = (-1, -1, -1, -1)
SHARD_SUFFIX = ".tfrecord"
_PREPARE_HINT = "Write the shards with `kanime prepare SRC OUT`."

# --- CRC32C (Castagnoli) ------------------------------------------------------------------

_POLY = 0x82F63B78  # the Castagnoli polynomial, bit-reversed
_MASK_DELTA = 0xA282EAD8


def _make_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (_POLY if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)
_BLOCK = 256  # bytes per block of the vectorized CRC
_GROUP = 256  # blocks combined at once with the distance tables
_VECTOR_MIN = 512  # shorter inputs use the byte loop

# The CRC register is linear over GF(2) in the input bits when it starts at 0. `_POS[j][b]`
# is the register after byte `b` at position `j` of a `_BLOCK`-byte block of zeros, so the
# register of a block is the XOR of `_POS[j][block[j]]` over its bytes.
_POS = np.empty((_BLOCK, 256), dtype=np.uint32)
_POS[_BLOCK - 1] = _TABLE_NP
for _j in range(_BLOCK - 2, -1, -1):
    _prev = _POS[_j + 1]
    _POS[_j] = (_prev >> np.uint32(8)) ^ _TABLE_NP[_prev & np.uint32(0xFF)]
del _j, _prev
_POS_FLAT = _POS.ravel()
_POS_OFFSETS = np.arange(_BLOCK, dtype=np.intp) * 256  # `take` on flat tables beats 2-D indexing
_BYTE_SHIFTS = np.array([0, 8, 16, 24], dtype=np.uint32)


def _shift(tables: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Applies a linear map of the register given by 4 byte tables: XOR of `tables[i][byte i]`."""
    m = np.uint32(0xFF)
    return (
        tables[0][x & m]
        ^ tables[1][(x >> np.uint32(8)) & m]
        ^ tables[2][(x >> np.uint32(16)) & m]
        ^ tables[3][x >> np.uint32(24)]
    )


# Feeding 4 zero bytes to a register `x` gives the same register as feeding the 4 bytes of
# `x` (little-endian) to a zero register. So "register followed by one block of zeros" is
# given by the tables of positions 0..3 of a block, `_POS[:4]`.
_distance = []  # [d][i][b]: byte b at byte i of a register followed by d blocks of zeros
_doubling = []  # [k]: tables of a register followed by _GROUP * 2**k blocks of zeros
_tables_lock = threading.Lock()


def _distance_tables() -> np.ndarray:
    with _tables_lock:
        if not _distance:
            tables = np.empty((_GROUP + 1, 4, 256), dtype=np.uint32)
            tables[0] = np.arange(256, dtype=np.uint32) << _BYTE_SHIFTS[:, None]
            tables[1] = _POS[:4]
            for d in range(2, _GROUP + 1):
                tables[d] = _shift(tables[1], tables[d - 1])
            _distance.append(tables)
        return _distance[0]


def _doubling_tables(level: int) -> np.ndarray:
    first = _distance_tables()[_GROUP]
    with _tables_lock:
        if not _doubling:
            _doubling.append(first)
        while len(_doubling) <= level:
            last = _doubling[-1]
            _doubling.append(_shift(last, last))
        return _doubling[level]


def _crc32c_loop(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_numpy(data: bytes) -> int:
    n = len(data)
    pad = -n % _BLOCK
    buf = np.zeros(pad + n, dtype=np.uint8)
    buf[pad:] = np.frombuffer(data, dtype=np.uint8)
    # The initial register 0xFFFFFFFF is the same as a zero register with the first four
    # bytes inverted; leading zero bytes leave a zero register at zero.
    buf[pad : pad + 4] ^= 0xFF
    regs = np.bitwise_xor.reduce(_POS_FLAT.take(buf.reshape(-1, _BLOCK) + _POS_OFFSETS), axis=1)
    # Block c of k is followed by k - 1 - c blocks: shift each register by its distance
    # to the end (in groups of at most _GROUP blocks) and XOR them.
    count = len(regs)
    width = min(count, _GROUP)
    extra = -count % width
    if extra:
        regs = np.concatenate([np.zeros(extra, dtype=np.uint32), regs])
    regs = regs.reshape(-1, width)
    # flat index of [distance][byte position][byte value] in the distance tables
    # (byte position i starts at i * 256 = _BYTE_SHIFTS[i] * 32)
    index = np.arange(width - 1, -1, -1, dtype=np.intp)[:, None] * 1024 + _BYTE_SHIFTS * 32
    index = index + ((regs[..., None] >> _BYTE_SHIFTS) & 0xFF)
    parts = _distance_tables().ravel().take(index.reshape(len(regs), -1))
    regs = np.bitwise_xor.reduce(parts, axis=1)
    # Groups (more than _GROUP blocks): combine neighbours, reg(A + B) = shift(reg(A)) ^ reg(B).
    width = 1 << (len(regs) - 1).bit_length()
    if width > len(regs):
        regs = np.concatenate([np.zeros(width - len(regs), dtype=np.uint32), regs])
    level = 0
    while len(regs) > 1:
        regs = _shift(_doubling_tables(level), regs[0::2]) ^ regs[1::2]
        level += 1
    return int(regs[0]) ^ 0xFFFFFFFF


def crc32c(data: bytes) -> int:
    """The CRC-32C (Castagnoli) checksum of `data`, as TFRecord files use it.

    Long inputs are checksummed with numpy (blocks in parallel, then combined);
    short ones with the classic table loop.

    Args:
        data: a bytes-like object.

    Returns:
        The checksum, an int in `[0, 2**32)`.

    Examples:
        >>> hex(crc32c(b"123456789"))
        '0xe3069283'
        >>> crc32c(bytes(1000)) == crc32c(bytearray(1000))
        True
    """
    data = bytes(data) if not isinstance(data, bytes) else data
    if len(data) < _VECTOR_MIN:
        return _crc32c_loop(data)
    return _crc32c_numpy(data)


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of `data` stored in TFRecord files."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# --- tf.train.Example: encoding (TensorFlow) ------------------------------------------------


def encode_example(
    face_id: str,
    jpeg_bytes: bytes,
    tags,
    tagged: int,
    source: str,
    box: Sequence[int] = UNKNOWN_BOX,
    year: int = -1,
) -> bytes:
    """One face as a serialized `tf.train.Example` (imports TensorFlow).

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
    import tensorflow as tf

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

    def as_bytes(*values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))

    def as_ints(*values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    feature = {
        "id": as_bytes(str(face_id).encode("utf-8")),
        "image": as_bytes(jpeg_bytes),
        "tags": tf.train.Feature(float_list=tf.train.FloatList(value=tags.tolist())),
        "tagged": as_ints(tagged),
        "source": as_bytes(os.fspath(source).encode("utf-8")),
        "box": as_ints(*box),
        "year": as_ints(int(year)),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()


# --- tf.train.Example: decoding (pure Python) -----------------------------------------------


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: bytes, pos: int, end: int) -> list[tuple[int, int, object]]:
    """The `(number, wire type, value)` fields of a message; LEN/fixed values are spans."""
    fields = []
    while pos < end:
        key = buf[pos]
        if key < 0x80:  # one-byte varints (the common case) inline
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 2:
            if pos >= end:
                raise ValueError(f"field {number} runs past the end of its message")
            size = buf[pos]
            if size < 0x80:
                pos += 1
            else:
                size, pos = _varint(buf, pos, end)
            value = (pos, pos + size)
            pos += size
        elif wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 5:
            value = (pos, pos + 4)
            pos += 4
        elif wire == 1:
            value = (pos, pos + 8)
            pos += 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")
        if pos > end:
            raise ValueError(f"field {number} runs past the end of its message")
        fields.append((number, wire, value))
    return fields


def _signed64(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >> 63 else value


def _feature(buf: bytes, start: int, stop: int) -> tuple[str | None, list]:
    """Decodes a `Feature` message: `(kind, values)`, kind one of bytes/float/int64/None."""
    kind, values = None, []
    for number, wire, span in _fields(buf, start, stop):
        if wire != 2 or number not in (1, 2, 3):
            continue  # unknown field: skip it
        values = []
        s, e = span
        if number == 1:
            kind = "bytes"
            for n, w, v in _fields(buf, s, e):
                if n == 1 and w == 2:
                    values.append(buf[v[0] : v[1]])
        elif number == 2:
            kind = "float"
            for n, w, v in _fields(buf, s, e):
                if n != 1:
                    continue
                if w == 2:  # packed
                    a, b = v
                    if (b - a) % 4:
                        raise ValueError("packed float list length is not a multiple of 4")
                    values.extend(np.frombuffer(buf, "<f4", (b - a) // 4, a).tolist())
                elif w == 5:  # one unpacked float
                    values.append(struct.unpack_from("<f", buf, v[0])[0])
        else:
            kind = "int64"
            for n, w, v in _fields(buf, s, e):
                if n != 1:
                    continue
                if w == 2:  # packed varints
                    pos, b = v
                    while pos < b:
                        x, pos = _varint(buf, pos, b)
                        values.append(_signed64(x))
                elif w == 0:  # one unpacked varint
                    values.append(_signed64(v))
    return kind, values


def parse_features(serialized: bytes) -> dict[str, tuple[str | None, list]]:
    """All features of a serialized `tf.train.Example`, in pure Python.

    Args:
        serialized: the bytes of one record.

    Returns:
        `{key: (kind, values)}` where kind is `"bytes"`, `"float"`, `"int64"`, or None
        for a feature with no value set.
    """
    buf = bytes(serialized)
    features = {}
    for number, wire, span in _fields(buf, 0, len(buf)):
        if number != 1 or wire != 2:
            continue
        for n, w, entry in _fields(buf, *span):
            if n != 1 or w != 2:
                continue
            a, b = entry
            key, value = "", (a, a)
            for k, kw, field_span in _fields(buf, a, b):
                if k == 1 and kw == 2:
                    key = buf[field_span[0] : field_span[1]].decode("utf-8")
                elif k == 2 and kw == 2:
                    value = field_span
            features[key] = _feature(buf, *value)
    return features


def decode_example(serialized: bytes) -> dict:
    """Decodes one face record in pure Python (no TensorFlow, no protobuf package).

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
        features = parse_features(serialized)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"Not a valid tf.train.Example: {error}") from None

    def get(key, kind, default):
        if key not in features or features[key][0] is None:
            return default
        got, values = features[key]
        if got != kind:
            raise ValueError(f"Feature {key!r} should be a {kind} list. Received a {got} list")
        return values or default

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
