"""Where the fused generator's time goes at batch 1, and what the RGB convolution could cost.

Usage:
    python benchmarks/generator_segments.py [--runs 40] [--backends tensorflow,jax]
        [--out benchmarks/results/generator_segments.json]

The paper-size generator (`kanime.models.Generator(resolution=128)`, random weights) is fused
(`fuse_generator(g)`, `subpixel_rgb` at its backend default), and the fused model is cut after
`project_act`, `trunk_skip`, `upsample_{0,1,2}_act` and at its output. Every prefix model is
compiled (`jit_compile=True`) and timed at batch 1 in warm rounds of 5 calls, the prefixes
taking turns; a segment's time is the difference of two prefixes' medians, and its rate is its
FLOPs (`benchmarks/flops.py`) over that time. Each backend runs in a fresh process twice: on
all CPU cores, and pinned to one core (`os.sched_setaffinity`), which shows which segments the
second core speeds up.

The last convolution (9x9, 64 channels to 3 at 128x128, 0.51 GFLOP) is then timed alone in
four exact forms, each compiled: Keras's `ops.conv`; the sub-pixel form `fuse_generator` uses on
TensorFlow (5x5, 256 to 12 channels on the 64x64 map before the last pixel shuffle, then a
pixel shuffle of the 12 channels); matmul-first (one
`(128 * 128, 64) @ (64, 81 * 3)` product, then the 81 shifted 3-channel slices summed); and by
FFT (`ops.rfft`/`ops.fft` over a 144x144 zero-padded map, the 64-to-3 channel sum per
frequency). Each gives its largest difference from `ops.conv`.
"""

import argparse

from results_io import write_report
from worker import run_worker

WORKER = r"""
import os, sys
runs, one_core = int(sys.argv[1]), sys.argv[2] == "1"
if one_core:
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
import json, statistics, time
import keras, numpy as np
from keras import ops
from flops import forward_flops
from kanime.models import Generator
from kanime.inference.fused import fuse_generator, space_to_depth_kernel

CUTS = {"project": "project_act", "trunk": "trunk_skip", "upsample_0": "upsample_0_act",
        "upsample_1": "upsample_1_act", "upsample_2": "upsample_2_act", "to_rgb": None}


def timed(calls, runs):
    # Medians in ms of `calls` (name -> compiled call), in warm rounds of 5 taking turns.
    for call in calls.values():
        for _ in range(3):
            ops.convert_to_numpy(call())
    times = {name: [] for name in calls}
    for _ in range(max(1, runs // 5)):
        for name, call in calls.items():
            ops.convert_to_numpy(call())
            for _ in range(5):
                start = time.perf_counter()
                ops.convert_to_numpy(call())
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


g = Generator(resolution=128)
rng = np.random.default_rng(0)
x = [rng.standard_normal((1, 128)).astype("float32"), np.zeros((1, 34), "float32")]
out = {"backend": keras.backend.backend(), "cpus_used": len(os.sched_getaffinity(0)), "forms": {}}
fused = fuse_generator(g)
prefixes = {}
for segment, layer in CUTS.items():
    model = fused if layer is None else keras.Model(fused.inputs, fused.get_layer(layer).output)
    model.compile(jit_compile=True)
    prefixes[segment] = model
calls = {s: (lambda m=m: m.predict_on_batch(x)) for s, m in prefixes.items()}
cumulative = timed(calls, runs)
form, ms, flops = {}, 0.0, 0
for segment, model in prefixes.items():
    total_flops = forward_flops(model)
    seg_ms, seg_flops = cumulative[segment] - ms, total_flops - flops
    rate = seg_flops / seg_ms / 1e6 if seg_ms > 0 else None
    form[segment] = {"cumulative_ms": cumulative[segment], "ms": seg_ms,
                     "gflop": seg_flops / 1e9, "gflop_per_s": rate}
    ms, flops = cumulative[segment], total_flops
out["forms"]["direct"] = form

# The 9x9 RGB convolution alone, in four exact forms.
kernel = (rng.standard_normal((9, 9, 64, 3)) * 0.05).astype("float32")
h = rng.standard_normal((1, 128, 128, 64)).astype("float32")
sub_kernel = space_to_depth_kernel(kernel)
taps = kernel.transpose(2, 0, 1, 3).reshape(64, 81 * 3)
N = 144  # >= 128 + 4 so that the circular convolution wraps onto zeros only
padded = np.zeros((N, N, 64, 3))
for dy in range(-4, 5):
    for dx in range(-4, 5):
        padded[dy % N, dx % N] = kernel[dy + 4, dx + 4]
spectrum = np.conj(np.fft.rfft2(padded, axes=(0, 1))).transpose(2, 3, 1, 0)  # (C, O, W/2+1, H)
k_re, k_im = spectrum.real.astype("float32"), spectrum.imag.astype("float32")


def direct(x):
    return ops.conv(x, kernel, padding="same")


def subpixel(s2d):  # what fuse_generator runs on TensorFlow, on the pre-shuffle map
    b, hh, ww, _ = s2d.shape
    y = ops.conv(s2d, sub_kernel, padding="same")
    y = ops.transpose(ops.reshape(y, (b, hh, ww, 2, 2, 3)), (0, 1, 3, 2, 4, 5))
    return ops.reshape(y, (b, 2 * hh, 2 * ww, 3))


def matmul_first(x):
    size = x.shape[1]
    p = ops.matmul(ops.pad(x, [[0, 0], [4, 4], [4, 4], [0, 0]]), taps)
    y = 0
    for a in range(9):
        for b in range(9):
            c = (a * 9 + b) * 3
            y = y + p[:, a:a + size, b:b + size, c:c + 3]
    return y


def fft(x):
    size = x.shape[1]
    t = ops.pad(ops.transpose(x, (0, 3, 1, 2)), [[0, 0], [0, 0], [0, N - size], [0, N - size]])
    re, im = ops.rfft(t)  # along W
    re, im = ops.fft((ops.transpose(re, (0, 1, 3, 2)), ops.transpose(im, (0, 1, 3, 2))))
    y_re = ops.einsum("bcwh,cowh->bowh", re, k_re) - ops.einsum("bcwh,cowh->bowh", im, k_im)
    y_im = ops.einsum("bcwh,cowh->bowh", re, k_im) + ops.einsum("bcwh,cowh->bowh", im, k_re)
    y_re, y_im = ops.fft((y_re, -y_im))  # inverse along H: conj(fft(conj(y))) / N
    y_re, y_im = ops.transpose(y_re / N, (0, 1, 3, 2)), ops.transpose(-y_im / N, (0, 1, 3, 2))
    y = ops.irfft((y_re, y_im), fft_length=N)
    return ops.transpose(y[:, :, :size, :size], (0, 2, 3, 1))


if keras.backend.backend() == "jax":
    import jax
    compile_ = jax.jit
else:
    import tensorflow as tf
    compile_ = lambda fn: tf.function(fn, jit_compile=True)
# The pre-shuffle map whose pixel shuffle is `h`: channels (row offset, column offset, channel).
pre_shuffle = h.reshape(1, 64, 2, 64, 2, 64).transpose(0, 1, 3, 2, 4, 5).reshape(1, 64, 64, 256)
calls = {f.__name__: (lambda f=compile_(f), a=a: f(a))
         for f, a in ((direct, h), (subpixel, pre_shuffle), (matmul_first, h), (fft, h))}
reference = ops.convert_to_numpy(calls["direct"]())
rgb = {"output_scale": float(np.abs(reference).max())}
for name, ms in timed(calls, runs).items():
    error = np.abs(ops.convert_to_numpy(calls[name]()) - reference).max()
    rgb[name] = {"ms": ms, "max_abs_difference": float(error)}
out["to_rgb_alone"] = rgb
print("RESULT" + json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--out", default="benchmarks/results/generator_segments.json")
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        for cores in ("all_cores", "one_core"):
            result = run_worker(
                WORKER, backend, [args.runs, int(cores == "one_core")], label=f"{backend} ({cores})"
            )
            results.setdefault(backend, {})[cores] = result
            for form, segments in result["forms"].items():
                parts = ", ".join(f"{s} {v['ms']:.1f}" for s, v in segments.items())
                total = segments["to_rgb"]["cumulative_ms"]
                print(f"{backend} {cores} {form}: {total:.1f} ms = {parts}", flush=True)
            rgb = result["to_rgb_alone"]
            print(f"{backend} {cores} 9x9 RGB conv alone: " + ", ".join(
                f"{k} {v['ms']:.1f} ms" for k, v in rgb.items() if k != "output_scale"
            ), flush=True)  # fmt: skip
    write_report(
        args.out,
        "the fused paper-size generator's time at batch 1 by segment, and the 9x9 RGB "
        "convolution alone in four exact forms",
        results,
    )


if __name__ == "__main__":
    main()
