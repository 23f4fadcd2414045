"""Where TensorFlow Lite's time goes at batch 1, and the forms kanime's TFLite engine did not take.

Usage:
    python benchmarks/tflite_parts.py [--runs 40] [--out benchmarks/results/tflite_parts.json]

The paper-size generator (`kanime.models.Generator(resolution=128)`, random weights) is
prepared as `kanime.inference.tflite.to_tflite` prepares it (`prepare_for_tflite`) and cut after
`project_act`, `trunk_skip`, `upsample_{0,1}_act`, `upsample_2_conv`, `upsample_2_act`,
`to_rgb` (the padded RGB convolution) and at its output (its `tanh`). Every prefix is
converted (`keras_to_tflite`) and run by TensorFlow Lite's interpreter on all cores at batch
1, the prefixes taking turns in warm rounds of 5 calls; a part's time is the difference of
two prefixes' medians, and its rate its FLOPs (`benchmarks/flops.py`) over that time.

One other form of the whole model takes its turns in the same rounds:
`rgb_12_channels`, `fuse_generator(g, subpixel_rgb=True)` as it is, its sub-pixel RGB
convolution with 12 output channels and the last pixel shuffle inside the model (what
`prepare_for_tflite` pads to 16 and moves out).

Each form's largest difference from the Keras generator's images is reported too, and the
time `images_from_subpixels` takes (numpy: the last pixel shuffle), alone and with numpy's
`tanh` after it, as the form that ends at `to_rgb` would need.
"""

import argparse

from results_io import write_report
from worker import run_worker

WORKER = r"""
import json, statistics, sys, time
import keras, numpy as np
import tensorflow as tf
from flops import forward_flops
from kanime.models import Generator
from kanime.inference.fused import fuse_generator
from kanime.inference.tflite import images_from_subpixels, keras_to_tflite, prepare_for_tflite

runs = int(sys.argv[1])
CUTS = ["project_act", "trunk_skip", "upsample_0_act", "upsample_1_act", "upsample_2_conv",
        "upsample_2_act", "to_rgb", None]
g = Generator(resolution=128)
rng = np.random.default_rng(0)
x = [rng.standard_normal((1, 128)).astype("float32"), np.zeros((1, 34), "float32")]
expected = np.asarray(g.predict_on_batch(x))


def interpreter(model):
    it = tf.lite.Interpreter(model_content=keras_to_tflite(model), num_threads=2)
    inputs = it.get_signature_runner().get_input_details()
    (output,) = it.get_signature_runner().get_output_details().values()
    it.allocate_tensors()
    it.set_tensor(inputs["z"]["index"], x[0])
    it.set_tensor(inputs["tags"]["index"], x[1])
    it.invoke()
    return it, output["index"]


prepared = prepare_for_tflite(g)
prefixes = {}
for cut in CUTS:
    output = prepared.outputs[0] if cut is None else prepared.get_layer(cut).output
    prefixes[cut or "images"] = keras.Model(prepared.inputs, output)
others = {
    "rgb_12_channels": fuse_generator(g, subpixel_rgb=True),
}
interpreters = {name: interpreter(m) for name, m in {**prefixes, **others}.items()}
out = {"backend": keras.backend.backend(), "interpreter_threads": 2, "max_abs_diff": {}}
for name, (it, index) in interpreters.items():
    if name in ("images", *others):
        images = it.get_tensor(index)
        images = images_from_subpixels(images) if name == "images" else images
        out["max_abs_diff"][name] = float(np.abs(images - expected).max())
times = {name: [] for name in interpreters}
for _ in range(max(1, runs // 5)):
    for name, (it, _) in interpreters.items():
        it.invoke()
        for _ in range(5):
            start = time.perf_counter()
            it.invoke()
            times[name].append(time.perf_counter() - start)
median = {name: statistics.median(t) * 1e3 for name, t in times.items()}
parts, ms, flops = {}, 0.0, 0
for name, model in prefixes.items():
    total = forward_flops(model)
    part_ms, part_flops = median[name] - ms, total - flops
    parts[name] = {"cumulative_ms": median[name], "ms": part_ms, "gflop": part_flops / 1e9,
                   "gflop_per_s": part_flops / part_ms / 1e6 if part_ms > 0 else None}
    ms, flops = median[name], total
out["parts"] = parts
out["whole_model_ms"] = {name: median[name] for name in ("images", *others)}
out["gflop"] = {name: forward_flops(m) / 1e9 for name, m in {"images": prepared, **others}.items()}
out["times_s"] = times
numpy_forms = {
    "images_from_subpixels": images_from_subpixels,
    "images_from_subpixels_then_tanh": lambda s: np.tanh(images_from_subpixels(s)),
}
subpixels = interpreters["images"][0].get_tensor(interpreters["images"][1])
numpy_times = {name: [] for name in numpy_forms}
for _ in range(runs):
    for name, form in numpy_forms.items():
        start = time.perf_counter()
        form(subpixels)
        numpy_times[name].append(time.perf_counter() - start)
out["numpy_ms"] = {name: statistics.median(t) * 1e3 for name, t in numpy_times.items()}
print("RESULT" + json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/tflite_parts.json")
    args = parser.parse_args()
    result = run_worker(WORKER, "tensorflow", [args.runs])
    for name, part in result["parts"].items():
        rate = part["gflop_per_s"]
        print(
            f"up to {name}: {part['cumulative_ms']:.2f} ms; this part {part['ms']:.2f} ms, "
            f"{part['gflop']:.3f} GFLOP" + (f", {rate:.0f} GFLOP/s" if rate else ""),
            flush=True,
        )
    for name, ms in result["whole_model_ms"].items():
        print(f"{name}: {ms:.2f} ms, {result['gflop'][name]:.2f} GFLOP, max abs diff "
              f"{result['max_abs_diff'][name]:.1e}")  # fmt: skip
    for name, ms in result["numpy_ms"].items():
        print(f"{name} (numpy): {ms:.2f} ms")
    write_report(
        args.out,
        "TensorFlow Lite paper generator at batch 1: time by part, and two other forms",
        result,
    )


if __name__ == "__main__":
    main()
