"""Generator inference time per 128x128 image at batch 1 and batch 64, per backend.

Usage:
    python benchmarks/generator_inference.py [--runs 30] [--backends tensorflow,jax]
        [--out benchmarks/results/generator_inference.json]

The paper-size generator (`kanime.models.Generator(resolution=128)`, random weights) runs in a
fresh process per backend, in forms that take turns so that all see the same machine load:

- `as_trained`: the model itself through `predict_on_batch` (Keras's compiled predict
  function; on a CPU-only TensorFlow Keras leaves XLA off);
- `fused`: what `kanime.inference.CharacterGenerator(model, engine="keras")` runs,
  `fuse_generator(model)` compiled with `jit_compile=True`: batch norm folded;
- `tflite`, where `CharacterGenerator`'s default engine picks it (TensorFlow on a CPU):
  the generator converted by `kanime.inference.tflite.to_tflite` and run by TensorFlow Lite's
  XNNPACK kernels on all cores (`TFLiteGenerator`). Its conversion time is reported too.

The first call of each (tracing, compiling) is reported apart; after 2 more warm-up calls the
figure is the median of `--runs` calls (`--runs / 6`, at least 3, at batch 64). At batch 1 the
forms take turns in rounds of one untimed and 5 timed calls, so that each timed call finds its
model's weights in the CPU's caches, as a server's repeated calls would; at batch 64 they take
turns call by call.

Each result also gives the model's floating-point operations per image (2 per multiply-add of
its Dense and Conv2D layers: `benchmarks/flops.py`; for `tflite`, those of
the Keras model it is converted from, `prepare_for_tflite`) and the rate a 2048x2048
float32 matmul reaches in the same process: their ratio is the time per image a model would
take running at matmul speed.
"""

import argparse

from results_io import write_report
from worker import run_worker

WORKER = r"""
import json, statistics, sys, time
import keras, numpy as np
from flops import forward_flops
from kanime.inference import CharacterGenerator
from kanime.models import Generator
from kanime.inference.tflite import prepare_for_tflite

runs = int(sys.argv[1])


def matmul_gflops(n=2048, repeats=5):
    a = keras.random.normal((n, n), seed=0)
    fn = lambda: keras.ops.convert_to_numpy(keras.ops.matmul(a, a))
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


g = Generator(resolution=128)
fused = CharacterGenerator(g, engine="keras").inference_model
models = {"as_trained": g, "fused": fused}
flops_of = {name: forward_flops(model) for name, model in models.items()}
out = {"backend": keras.backend.backend(), "params": g.count_params()}
start = time.perf_counter()
characters = CharacterGenerator(g)  # what `kanime generate` and `kanime serve` run
out["default_engine"] = characters.engine
if characters.engine == "tflite":
    out["tflite_conversion_s"] = time.perf_counter() - start
    models["tflite"] = characters.inference_model
    flops_of["tflite"] = forward_flops(prepare_for_tflite(g))
gflops = out["matmul_gflops"] = matmul_gflops()
for name, flops in flops_of.items():
    out[name] = {"flops_per_image": flops, "ms_per_image_at_matmul_speed": flops / gflops / 1e6}
for batch in (1, 64):
    rng = np.random.default_rng(0)
    x = [rng.standard_normal((batch, 128)).astype("float32"), np.zeros((batch, 34), "float32")]
    n = runs if batch == 1 else max(3, runs // 6)
    times = {name: [] for name in models}
    for name, model in models.items():
        start = time.perf_counter()
        np.asarray(model.predict_on_batch(x))
        out[name][f"batch_{batch}_first_call_s"] = time.perf_counter() - start
        for _ in range(2):
            np.asarray(model.predict_on_batch(x))
    # Rounds of `block` calls per form after one untimed call, the forms taking turns: each
    # timed call finds its own weights in the caches, as a server's repeated calls do.
    block = 5 if batch == 1 else 1
    for _ in range(max(1, n // block)):
        for name, model in models.items():
            if block > 1:
                np.asarray(model.predict_on_batch(x))
            for _ in range(block):
                start = time.perf_counter()
                np.asarray(model.predict_on_batch(x))
                times[name].append(time.perf_counter() - start)
    for name in models:
        median = statistics.median(times[name])
        out[name][f"batch_{batch}"] = {
            "median_ms_per_call": median * 1e3,
            "median_ms_per_image": median * 1e3 / batch,
            "times_s": times[name],
        }
    median = {name: statistics.median(t) for name, t in times.items()}
    out[f"batch_{batch}_fused_speedup"] = median["as_trained"] / median["fused"]
    if "tflite" in median:
        out[f"batch_{batch}_tflite_speedup_over_fused"] = median["fused"] / median["tflite"]
print("RESULT" + json.dumps(out))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--out", default="benchmarks/results/generator_inference.json")
    args = parser.parse_args()
    results = {}
    for backend in args.backends.split(","):
        result = results[backend] = run_worker(WORKER, backend, [args.runs])
        for form in ("as_trained", "fused", "tflite"):
            if form not in result:
                continue
            one, many = (result[form][f"batch_{b}"]["median_ms_per_image"] for b in (1, 64))
            floor = result[form]["ms_per_image_at_matmul_speed"]
            print(
                f"{backend} {form}: {one:.1f} ms/image at batch 1, {many:.1f} at batch 64 "
                f"(at matmul speed: {floor:.1f})",
                flush=True,
            )
    write_report(
        args.out,
        "paper-size 128x128 generator inference per image, as trained, fused and TensorFlow Lite",
        results,
        target_ms_per_image_at_batch_1=20,
    )


if __name__ == "__main__":
    main()
