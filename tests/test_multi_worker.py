"""`training.distribute: multi_worker` on TensorFlow: two worker processes train as one device.

Two Python processes on localhost form a `tf.distribute.MultiWorkerMirroredStrategy`
cluster through their `TF_CONFIG`, one CPU replica each, and train the tiny recipe for
four steps on global batches of 8. A third process trains the same steps on one device.
The workers must log the losses one device logs and end with its variables. Then two
`kanime fit` workers train a run: the chief writes the run folder, the other worker its own
copy under `workers/`. Last, two JAX processes (`keras.distribution.initialize`, collectives
over Gloo) train a run with `kanime fit` as one device does.
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, TINY, run_python, write_recipe

TIMEOUT = 300  # seconds for the three processes together
STEPS = 4

# Trains the tiny recipe for `STEPS` steps with `distribute` set to `sys.argv[1]` ("none" for
# one device) and writes the losses each step logs, the variables before and after, and what
# the process saw of the cluster to `sys.argv[2]` + ".json" / ".npz".
# The input is what `kanime fit` feeds on TensorFlow (`ArrayBatches.to_tf_dataset`): a
# `tf.data` dataset of global batches of 8 with static shapes. `tf.distribute` shards it: each
# worker reads every global batch and its replica takes its 4 rows.
# SGD replaces Adam and `fake_tags: data` is set, as in `test_distribute.py`.
STEP = """
import json, sys
mode = None if sys.argv[1] == "none" else sys.argv[1]
from kanime.training import distribute
if mode is not None:
    # MultiWorkerMirroredStrategy must be made before any other TensorFlow op runs.
    distribute.tf_strategy(mode)
import keras, numpy as np
from keras import ops
from kanime.data.batches import ArrayBatches
from kanime.recipe import recipe_from_dict
from kanime.training.fit import build_gan

training = {**RAW["training"], "distribute": mode, "fake_tags": "data", "batch_size": 8}
recipe = recipe_from_dict({**RAW, "training": training})
rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (16, 32, 32, 3)).astype("float32")
tags = recipe.vocabulary.sample(16, rng)
data = ArrayBatches(images, tags, 8, STEPS, seed=0, flip=False).to_tf_dataset(0, STEPS)

with distribute.scope(mode):
    keras.utils.set_random_seed(0)
    gan = build_gan(recipe)
    gan.compile(keras.optimizers.SGD(0.01), keras.optimizers.SGD(0.01))
    variables = gan.state_variables()
    start = [ops.convert_to_numpy(v) for v in variables]
    logs = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs=None, out=logs: out.append(
            {k: float(v) for k, v in logs.items()}
        )
    )
    gan.fit(data, epochs=1, shuffle=False, verbose=0, callbacks=[record])
    end = [ops.convert_to_numpy(v) for v in variables]

out = {
    "logs": logs,
    "replicas": distribute.num_replicas(mode),
    "processes": distribute.num_processes(mode),
    "step": gan.step,
    "paths": [v.path for v in variables],
}
if mode is not None:
    import tensorflow as tf

    resolver = distribute.tf_strategy(mode).cluster_resolver
    out["workers"] = resolver.cluster_spec().num_tasks("worker")
    out["task"] = resolver.task_id
    out["mirrored"] = isinstance(gan.generator.weights[0].value, tf.distribute.DistributedValues)
with open(sys.argv[2] + ".json", "w") as f:
    json.dump(out, f)
np.savez(sys.argv[2] + ".npz", *start, *end)
print("LOGS" + json.dumps(logs))
"""


def free_ports(n):
    """`n` distinct TCP ports of localhost that were free a moment ago."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("localhost", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def start(mode, prefix, tf_config=None):
    """Starts `STEP` in a fresh interpreter; its stdout and stderr go to files by `prefix`."""
    code = f"RAW = {json.dumps(TINY)!r}\nRAW = __import__('json').loads(RAW)\nSTEPS = {STEPS}\n"
    return start_python(["-c", code + STEP, mode, str(prefix)], prefix, tf_config)


def start_python(args, prefix, tf_config=None, backend="tensorflow", env=None):
    """Starts `python *args` on `backend` with `tf_config` as its `TF_CONFIG` (or none).

    `env` adds variables to the process's environment.
    """
    env = {**os.environ, **(env or {}), "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    with open(f"{prefix}.out", "w") as stdout, open(f"{prefix}.err", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, *args], stdout=stdout, stderr=stderr, env=env, cwd=ROOT
        )


# The rows of printed tensors, which TensorFlow's errors about distributed values quote whole.
TENSOR_ROW = re.compile(r"^\s*(array\()?[\[\]\d\s.,e+\-]*(\.\.\.)?,?$")


def tail(prefix, chars=4000):
    """The end of a process's stdout and stderr, without the rows of quoted tensors."""
    texts = []
    for ext in ("out", "err"):
        with open(f"{prefix}.{ext}") as f:
            lines = [x for x in f.read().splitlines() if not TENSOR_ROW.match(x)]
        texts.append("\n".join(lines)[-chars:])
    return "\n".join(texts)


def run_all(processes):
    """Waits for `{prefix: process}` (see `wait_all`) and loads their results."""
    wait_all(processes)
    results = {}
    for prefix in processes:
        with open(f"{prefix}.json") as f:
            result = json.load(f)
        with np.load(f"{prefix}.npz") as arrays:
            values = [arrays[f"arr_{i}"].astype("float64") for i in range(len(arrays.files))]
        half = len(values) // 2
        result["start"], result["end"] = values[:half], values[half:]
        results[prefix] = result
    return results


def wait_all(processes):
    """Waits for `{prefix: process}` to exit successfully.

    Fails, killing them all, on the first that exits with an error (a worker left alone
    would wait for its peer) or when they run past `TIMEOUT`.
    """
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(p.poll() is None for p in processes.values()):
            for prefix, process in processes.items():
                code = process.poll()
                assert code in (None, 0), f"{prefix} failed ({code}):\n{tail(prefix)}"
            if time.monotonic() > deadline:
                running = [prefix for prefix, p in processes.items() if p.poll() is None]
                pytest.fail(f"{running} ran past {TIMEOUT} s:\n{tail(running[0])}")
            time.sleep(0.5)
        for prefix, process in processes.items():
            assert process.returncode == 0, f"{prefix} failed:\n{tail(prefix)}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_two_workers_train_like_one_device_on_the_global_batch(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    prefixes = [tmp_path / "worker0", tmp_path / "worker1", tmp_path / "one"]
    processes = {}
    try:
        for index in range(2):
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            processes[prefixes[index]] = start("multi_worker", prefixes[index], config)
        processes[prefixes[2]] = start("none", prefixes[2])
    except BaseException:
        for process in processes.values():
            process.kill()
            process.wait()
        raise
    results = run_all(processes)
    workers = [results[p] for p in prefixes[:2]]
    one = results[prefixes[2]]

    # Each worker is one replica of a two-replica cluster and knows its place in it.
    for index, worker in enumerate(workers):
        assert worker["workers"] == 2 and worker["task"] == index, worker
        assert worker["replicas"] == 2 and worker["processes"] == 1 and worker["mirrored"]
        assert worker["step"] == STEPS and worker["paths"] == one["paths"]
    assert one["replicas"] == 1 and one["step"] == STEPS
    for worker in workers:  # the same initial weights as one device
        for path, a, b in zip(one["paths"], one["start"], worker["start"]):
            np.testing.assert_array_equal(a, b, err_msg=path)

    # Every step's logs: equal on both workers (they hold the all-reduced means), and equal
    # to one device's up to float32 sums taken in another order (as in test_distribute, 1e-5
    # relative; observed <= 3e-7). A worker training on only its own half of each global
    # batch, on whole batches of its own, or drawing the other worker's noise is off by
    # percents. A step's logs precede its updates, so the last step's updates show only in
    # the variables below, and a wrong update shows in the losses only steps later: hence
    # four steps rather than two.
    assert len(one["logs"]) == len(workers[0]["logs"]) == len(workers[1]["logs"]) == STEPS
    for step, (a, b0, b1) in enumerate(zip(one["logs"], workers[0]["logs"], workers[1]["logs"])):
        assert set(a) == set(b0) == set(b1)
        for name in a:
            assert np.isfinite(a[name]) and np.isfinite(b0[name]), (step, name, a, b0)
            # abs: the mean D logits sit near 0 (a mean of +-0.05 logits), where sums in
            # another order differ by ~1e-7.
            assert b1[name] == pytest.approx(b0[name], rel=1e-6, abs=1e-7), (step, name, b1)
            assert b0[name] == pytest.approx(a[name], rel=1e-5, abs=1e-6), (step, name, a, b0)

    # Every variable (weights, EMA, batch-norm statistics, optimizer and seed state) is the
    # same on both workers and ends where one device puts it, up to 1e-3 of the distance it
    # moved (as in test_distribute). 1e-7 absorbs the conv biases ahead of batch norm, whose
    # gradient is rounding noise.
    moved = [float(np.max(np.abs(b - a))) for a, b in zip(one["start"], one["end"])]
    assert max(moved) > 1e-3  # the steps did train
    for path, a, b0, b1, m in zip(one["paths"], one["end"], *(w["end"] for w in workers), moved):
        np.testing.assert_allclose(b1, b0, rtol=0, atol=1e-6, err_msg=path)
        apart = float(np.max(np.abs(b0 - a)))
        assert apart <= 1e-3 * m + 1e-7, (path, m, apart)


# What Keras 3.15's `fit` asks of `strategy.reduce` under MultiWorkerMirroredStrategy
# (keras-team/keras#20585), on a strategy of one local worker (no `TF_CONFIG`): the mean of a
# tuple batch with `axis=None` (`_maybe_symbolic_build`) and the mean of a scalar log with
# `axis=0` (`reduce_per_replica`). Plain `MultiWorkerMirroredStrategy.reduce` fails on the
# scalar here ("Invalid reduction dimension 0"); the tuple fails only across workers ("Attempt
# to convert a value (PerReplica...)"), which the two-worker test above covers.
REDUCE = """
import json
from kanime.training import distribute
strategy = distribute.tf_strategy("multi_worker")
import tensorflow as tf

@tf.function
def step():
    return strategy.run(lambda: ((tf.ones((2, 3)), tf.zeros((2,))), tf.constant(1.5)))

batch, log = step()
batch = strategy.reduce("MEAN", batch, axis=None)
log = strategy.reduce("MEAN", log, axis=0)
print("RESULT" + json.dumps([[b.shape.as_list() for b in batch], float(log)]))
"""


def test_multi_worker_reduce_takes_what_keras_fit_gives_it():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the workaround is TensorFlow's; this process runs another backend")
    out = run_python(REDUCE, env={"TF_CONFIG": "{}"}).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    assert json.loads(line[len("RESULT") :]) == [[[2, 3], [2]], 1.5]


def test_kanime_fit_on_two_workers_writes_one_run_and_a_copy_per_other_worker(tmp_path):
    import keras

    from kanime.run.checkpoint import read_meta

    recipe = write_recipe(tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    args = ["-m", "kanime.cli", "fit", str(recipe), "--run-dir", str(run), "--no-progress",
            "--set", "training.distribute=multi_worker"]  # fmt: skip
    processes = {}
    for index in range(2):
        config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        prefix = tmp_path / f"worker{index}"
        processes[prefix] = start_python(args, prefix, config)
    wait_all(processes)

    # The chief (worker 0) writes the run folder; worker 1 its own copy beside it.
    copy = run / "workers" / "worker-1"
    assert sorted(p.name for p in (run / "workers").iterdir()) == ["worker-1"]
    for folder in (run, copy):
        backup = folder / "backup" / "state.weights.h5"
        assert read_meta(backup)["step"] == TINY["training"]["steps"]
        lines = (folder / "logs" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [2, 4, 6, 8]  # each step once
    chief, other = (keras.saving.load_model(f / "generator.keras") for f in (run, copy))
    for a, b in zip(chief.weights, other.weights):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-6)


def jax_processes(args, tmp_path, name):
    """Starts `python *args` as the two processes of a JAX cluster on localhost."""
    (port,) = free_ports(1)
    processes = {}
    for index in range(2):
        cluster = {
            "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
            "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
            "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
        }
        prefix = tmp_path / f"{name}{index}"
        processes[prefix] = start_python(args, prefix, backend="jax", env=cluster)
    return processes


def test_kanime_fit_on_two_jax_processes_trains_like_one_device(tmp_path):
    import keras
    from PIL import Image

    from kanime.run.checkpoint import read_meta
    from kanime.run.metrics_log import read_metrics

    recipe = write_recipe(tmp_path / "tiny.yaml")
    run, one = tmp_path / "run", tmp_path / "one"
    fit = ["-m", "kanime.cli", "fit", str(recipe), "--no-progress"]
    processes = jax_processes(
        [*fit, "--run-dir", str(run), "--set", "training.distribute=multi_worker"], tmp_path, "p"
    )
    processes[tmp_path / "one"] = start_python([*fit, "--run-dir", str(one)], tmp_path / "one",
                                               backend="jax")  # fmt: skip
    wait_all(processes)

    # Process 0 writes the run folder; process 1 its own copy beside it.
    copy = run / "workers" / "process-1"
    assert sorted(p.name for p in (run / "workers").iterdir()) == ["process-1"]
    steps = TINY["training"]["steps"]
    rows = {}
    for folder in (run, copy, one):
        assert read_meta(folder / "backup" / "state.weights.h5")["step"] == steps
        rows[folder] = read_metrics(folder)
        assert [row["step"] for row in rows[folder]] == [2, 4, 6, 8]  # each step once
    # Each process fed half of every global batch; together they train as one device on the
    # whole batch (the losses to float32 sums in another order; a process training on its
    # half alone, or on whole batches of its own, is off by percents).
    for a, b0, b1 in zip(rows[one], rows[run], rows[copy]):
        for name in (k for k in a if not k.startswith("perf/")):
            assert b1[name] == pytest.approx(b0[name], rel=1e-6), (a["step"], name)
            assert b0[name] == pytest.approx(a[name], rel=1e-5), (a["step"], name, a, b0)
    # Both processes wrote the last sample grid, as one device draws it (Keras's `predict`
    # cannot fetch what the other process holds: `distribute.predict` computes it locally).
    grids = [np.asarray(Image.open(f / "samples" / f"step-{steps:07d}.png"), "int16")
             for f in (run, copy, one)]  # fmt: skip
    assert np.abs(grids[0] - grids[1]).max() == 0
    assert np.abs(grids[0] - grids[2]).max() <= 1
    models = [keras.saving.load_model(f / "generator.keras") for f in (run, copy, one)]
    for a, b, c in zip(*(m.weights for m in models)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=0, atol=1e-4)


def test_kanime_fit_on_two_jax_processes_refuses_evaluation_during_training(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    args = ["-m", "kanime.cli", "fit", str(recipe), "--run-dir", str(tmp_path / "run"),
            "--no-progress", "--set", "training.distribute=multi_worker",
            "--set", "logging.evaluate_every=4"]  # fmt: skip
    processes = jax_processes(args, tmp_path, "p")
    for prefix, process in processes.items():
        assert process.wait(timeout=TIMEOUT) != 0
        assert "`logging.evaluate_every` does not work with" in tail(prefix), tail(prefix)
    assert not (tmp_path / "run" / "backup").exists()
