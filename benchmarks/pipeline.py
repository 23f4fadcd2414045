"""Images per second of kanime's tf.data input pipeline against a naive one.

Usage:
    python benchmarks/pipeline.py [--images 4096] [--shards 16] [--size 128]
        [--batch-size 64] [--epochs 3] [--repeats 3] [--out benchmarks/results/pipeline.json]
        [--note TEXT]

Writes `--images` procedural 128x128 faces (`kanime.data.procedural.make_faces`) as JPEGs
(quality 95) into `--shards` TFRecord shards in a temporary folder, then times in one
process:

- `make_dataset`: `kanime.data.pipeline.make_dataset(folder, batch_size, size)`, unseeded
  (the training setting; the decoded faces fit in memory, so it decodes them in its first
  pass and keeps them), seeded (`seed=0`, deterministic order), and streamed (`cache=False`:
  every pass decodes the JPEGs again, as for a data set too large for memory);
- `naive`: `TFRecordDataset(files)` -> per-example `tf.io.parse_single_example` -> JPEG
  decode -> cast -> random flip, no parallelism -> batch, no prefetch.

Each repeat builds a fresh dataset, warms it up for one epoch (timed apart, as
`first_epoch_images_per_s`), then times `--epochs` epochs; the figure is the median
images/s of the repeats. The process CPU time per image
(process CPU seconds / images), the cores used (process CPU seconds / wall seconds) and
the 1-minute load average are recorded too: on a shared machine the CPU time per image is
the steadier figure.
"""

import argparse
import gc
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_io import write_result

ROOT = Path(__file__).resolve().parents[1]


def write_shards(folder, n, size, shards):
    import cv2

    from kanime.data.procedural import make_faces
    from kanime.data.tfrecords import ShardWriter, encode_example

    images, tags = make_faces(n, size, seed=0)
    jpeg_bytes = 0
    with ShardWriter(folder, shard_size=math.ceil(n / shards)) as writer:
        for i in range(n):
            ok, data = cv2.imencode(".jpg", images[i][:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            jpeg_bytes += len(data)
            writer.write(encode_example(f"face{i}", data.tobytes(), tags[i], 1, f"face{i}.png"))
    return writer.written, jpeg_bytes / n


def naive_dataset(files, size, batch_size):
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "tags": tf.io.FixedLenFeature([34], tf.float32),
    }

    def parse(record):
        return tf.io.parse_single_example(record, spec)

    def decode(example):
        image = tf.io.decode_jpeg(example["image"], channels=3)
        return tf.ensure_shape(image, (size, size, 3)), example["tags"]

    def cast(image, tags):
        return tf.cast(image, tf.float32) / 127.5 - 1.0, tags

    def flip(image, tags):
        return tf.image.random_flip_left_right(image), tags

    dataset = tf.data.TFRecordDataset(files).repeat()
    for fn in (parse, decode, cast, flip):
        dataset = dataset.map(fn)
    return dataset.batch(batch_size, drop_remainder=True)


def time_epochs(dataset, steps_per_epoch, epochs):
    """Wall and process CPU seconds of `epochs` epochs after a warm-up epoch, and the
    warm-up epoch's wall seconds (from the first batch asked for)."""
    gc.collect()  # the previous pipeline's iterator and threads are gone
    start = time.perf_counter()
    iterator = iter(dataset)
    for _ in range(steps_per_epoch):  # warm-up epoch
        next(iterator)
    first = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps_per_epoch * epochs):
        images, _ = next(iterator)
    images.numpy()
    return time.perf_counter() - start, time.process_time() - cpu, first


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    parser.add_argument("--note", default="", help="free text stored in the result")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    from kanime.data.pipeline import make_dataset

    steps = args.images // args.batch_size
    timed_images = steps * args.batch_size * args.epochs
    pipelines = {
        "make_dataset": lambda: make_dataset(folder, args.batch_size, args.size),
        "make_dataset_seeded": lambda: make_dataset(folder, args.batch_size, args.size, seed=0),
        "make_dataset_streamed": lambda: make_dataset(
            folder, args.batch_size, args.size, cache=False
        ),
        "naive": lambda: naive_dataset(files, args.size, args.batch_size),
    }
    fields = ("seconds", "images_per_s", "cpu_us_per_image", "cores_used", "load_average",
              "first_epoch_images_per_s")  # fmt: skip
    results = {name: {field: [] for field in fields} for name in pipelines}
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        files, jpeg_size = write_shards(folder, args.images, args.size, args.shards)
        print(f"wrote {len(files)} shards in {time.perf_counter() - start:.0f} s", flush=True)
        for repeat in range(args.repeats):
            for name, make in pipelines.items():  # interleaved, so drifts hit all alike
                seconds, cpu, first = time_epochs(make(), steps, args.epochs)
                result = results[name]
                result["first_epoch_images_per_s"].append(steps * args.batch_size / first)
                result["seconds"].append(seconds)
                result["images_per_s"].append(timed_images / seconds)
                result["cpu_us_per_image"].append(cpu / timed_images * 1e6)
                result["cores_used"].append(cpu / seconds)
                result["load_average"].append(os.getloadavg()[0])
                print(
                    f"repeat {repeat}: {name}: {timed_images / seconds:,.0f} images/s "
                    f"(first epoch {result['first_epoch_images_per_s'][-1]:,.0f}), "
                    f"{cpu / timed_images * 1e6:.0f} CPU us/image, {cpu / seconds:.2f} cores, "
                    f"load {result['load_average'][-1]:.2f}",
                    flush=True,
                )
    for result in results.values():
        result["median_images_per_s"] = statistics.median(result["images_per_s"])
        result["median_cpu_us_per_image"] = statistics.median(result["cpu_us_per_image"])
        result["median_first_epoch_images_per_s"] = statistics.median(
            result["first_epoch_images_per_s"]
        )
    ratio = results["make_dataset"]["median_images_per_s"] / results["naive"]["median_images_per_s"]
    report = {
        "what": "images/s of make_dataset (in-memory cache of the decoded faces, or interleave, "
        "shuffle, batched parse and parallel JPEG decode; flip, prefetch) against a naive "
        "sequential tf.data pipeline",
        "images": args.images,
        "shards": len(files),
        "image_size": args.size,
        "mean_jpeg_bytes": jpeg_size,
        "jpeg_quality": 95,
        "batch_size": args.batch_size,
        "timed_epochs_per_repeat": args.epochs,
        "repeats": args.repeats,
        "load_average_at_start": load_at_start,
        "note": args.note,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
        },
        "command": "python " + shlex.join(sys.argv),
        "results": results,
        "make_dataset_over_naive": ratio,
    }
    for name, result in results.items():
        print(
            f"{name}: median {result['median_images_per_s']:,.0f} images/s, "
            f"{result['median_cpu_us_per_image']:.0f} CPU us/image"
        )
    streamed = results["make_dataset_streamed"]["median_images_per_s"]
    report["make_dataset_streamed_over_naive"] = streamed / results["naive"]["median_images_per_s"]
    print(f"make_dataset / naive: {ratio:.2f}x; streamed / naive: "
          f"{report['make_dataset_streamed_over_naive']:.2f}x")  # fmt: skip
    write_result(args.out, report)


if __name__ == "__main__":
    main()
