"""One 3x3 convolution at batch 1 in TensorFlow Lite: direct, and by Winograd's forms.

Usage:
    python benchmarks/tflite_winograd.py [--runs 60] [--out benchmarks/results/tflite_winograd.json]

Which of the generator's 3x3 convolutions `kanime.inference.tflite.prepare_for_tflite` gives to
Winograd's F(4x4, 3x3). The paper generator's four kinds of 3x3 convolution are measured:
the residual blocks' (16x16, 64 -> 64 channels) and the upsampling blocks' at
16x16, 32x32 and 64x64 (64 -> 256 channels; the 64x64 one is the model's largest layer).
Each is run in three forms, each a one-layer Keras model with random weights traced
by `tf.function`, converted by `tf.lite.TFLiteConverter` and run by TensorFlow Lite's
interpreter (XNNPACK) on 2 threads, all forms taking turns in warm rounds of 5 calls:

- `direct`: `keras.layers.Conv2D(filters, 3, padding="same")`;
- `F(2x2,3x3)`: `kanime.inference.winograd.WinogradConv2D` (16 slices of the input, sums
  and one batched matrix product; 2.25 times fewer multiply-adds);
- `F(4x4,3x3)`: `kanime.inference.winograd.WinogradF4x4Conv2D` (a depthwise convolution,
  two matrix products and two transposes; 4 times fewer multiply-adds).

Each form's largest difference from `direct`, relative to `direct`'s largest output, is
reported too.
"""

import argparse

from results_io import write_report
from worker import run_worker

WORKER = r"""
import json, statistics, sys, time, warnings
import keras, numpy as np
import tensorflow as tf
from kanime.inference.winograd import WinogradConv2D, WinogradF4x4Conv2D, winograd_kernel

warnings.filterwarnings("ignore")  # tf.lite.Interpreter's deprecation
runs = int(sys.argv[1])
LAYERS = {"residual_16x16_64_to_64": (16, 64, 64), "upsample_16x16_64_to_256": (16, 64, 256),
          "upsample_32x32_64_to_256": (32, 64, 256), "upsample_64x64_64_to_256": (64, 64, 256)}


def interpreter(layer, weights, x):
    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, layer(inputs))
    weights = [tf.constant(w) for w in weights]  # as `kanime.inference.tflite.keras_to_tflite` does

    @tf.function(input_signature=[tf.TensorSpec(x.shape, tf.float32)])
    def f(x):
        return model.stateless_call(weights, [], x)[0]

    module = tf.Module()
    module.f = f
    content = tf.lite.TFLiteConverter.from_concrete_functions(
        [f.get_concrete_function()], module).convert()
    it = tf.lite.Interpreter(model_content=content, num_threads=2)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it


rng = np.random.default_rng(0)
out = {"interpreter_threads": 2, "layers": {}}
for name, (size, c, o) in LAYERS.items():
    kernel = (rng.standard_normal((3, 3, c, o)) / np.sqrt(9 * c)).astype("float32")
    bias = np.zeros(o, "float32")
    x = rng.standard_normal((1, size, size, c)).astype("float32")
    its = {
        "direct": interpreter(keras.layers.Conv2D(o, 3, padding="same"), [kernel, bias], x),
        "F(2x2,3x3)": interpreter(WinogradConv2D(o), [winograd_kernel(kernel), bias], x),
        "F(4x4,3x3)": interpreter(
            WinogradF4x4Conv2D(o), [winograd_kernel(kernel, output_tile=4), bias], x),
    }
    times = {form: [] for form in its}
    for _ in range(max(1, runs // 5)):
        for form, it in its.items():
            it.invoke()
            for _ in range(5):
                start = time.perf_counter()
                it.invoke()
                times[form].append(time.perf_counter() - start)
    outputs = {form: it.get_tensor(it.get_output_details()[0]["index"]) for form, it in its.items()}
    scale = float(np.abs(outputs["direct"]).max())
    multiply_adds = {"direct": 9, "F(2x2,3x3)": 16 / 4, "F(4x4,3x3)": 36 / 16}  # per pixel
    out["layers"][name] = {
        form: {
            "ms": statistics.median(times[form]) * 1e3,
            "gflop": 2 * multiply_adds[form] * size * size * c * o / 1e9,
            "relative_max_diff": float(np.abs(outputs[form] - outputs["direct"]).max()) / scale,
            "times_s": times[form],
        }
        for form in its
    }
print("RESULT" + json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results/tflite_winograd.json")
    args = parser.parse_args()
    result = run_worker(WORKER, "tensorflow", [args.runs])
    for name, forms in result["layers"].items():
        print(name)
        for form, r in forms.items():
            print(f"  {form}: {r['ms']:.2f} ms, {r['gflop']:.3f} GFLOP, "
                  f"relative max diff {r['relative_max_diff']:.1e}")  # fmt: skip
    write_report(
        args.out,
        "One 3x3 convolution at batch 1 in TensorFlow Lite: direct and by Winograd's forms",
        result,
    )


if __name__ == "__main__":
    main()
