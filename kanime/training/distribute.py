"""Data parallelism: one training step spread over several devices.

A recipe's `training.distribute` chooses it:

- `None` (the default): one device.
- `"mirrored"`: every visible device of this machine (its GPUs, or else its
  CPU devices). On TensorFlow a `tf.distribute.MirroredStrategy`; on JAX a
  `keras.distribution.DataParallel` over `keras.distribution.list_devices()`.
- `"multi_worker"`: several machines, each running the same command. On
  TensorFlow a `tf.distribute.MultiWorkerMirroredStrategy`, which reads the
  cluster from each worker's `TF_CONFIG` environment variable (with two
  workarounds: see `tf_strategy`); on JAX
  `keras.distribution.initialize()` (which reads `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
  `KERAS_DISTRIBUTION_NUM_PROCESSES` and `KERAS_DISTRIBUTION_PROCESS_ID`) and a
  `DataParallel` over the devices of every process, each process feeding its
  share of the global batch.

`training.batch_size` stays the global batch: each of the `R` replicas gets
`batch_size / R` images, so `batch_size` must be a multiple of `R`. A step
computes what one device computes for the same global batch:

- the losses are means over the global batch. On JAX the jitted step sees
  global arrays, so this holds as written. On TensorFlow each replica
  differentiates its local mean divided by `R`; Keras's optimizers sum the
  replicas' gradients, which gives the gradient of the global mean, and the
  logged losses are averaged over the replicas;
- the step's random draws (noise, fake tags, DRAGAN's `u` and `alpha`) are made
  for the global batch and each replica uses its slice, so the replicas draw
  different noise and the step stays reproducible from the seed;
- the DRAGAN penalty's scale `std(x)` and the generator's batch norm use the
  statistics of the global batch (on TensorFlow by all-reduces: the training
  generator's `BatchNormalization` layers are switched to `synchronized=True`;
  the exported EMA generator keeps plain layers, loadable on any backend).

Examples:

    >>> num_replicas(None)
    1
    >>> check_batch_size(64, 4)
    >>> check_batch_size(30, 4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    kanime.recipe.RecipeError: `training.batch_size` (30) must be a multiple of ... replicas (4) ...
"""

import contextlib
import functools

import keras

from kanime.recipe import RecipeError

MODES = ("mirrored", "multi_worker")


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(
            f"`distribute` must be None or one of {MODES}. Received: distribute={mode!r}"
        )


@functools.cache
def tf_strategy(mode):
    """The `tf.distribute.Strategy` of `mode`, made once per process.

    `"mirrored"` mirrors over the machine's GPUs, or its CPU devices when it has
    none (TensorFlow's own default would take only the first CPU).

    `"multi_worker"` must be made before any other TensorFlow op runs. It comes
    with two workarounds, both checked by `tests/test_multi_worker.py`:

    - Keras's `fit` hands `strategy.reduce` what it cannot take (see
      `_multi_worker_strategy`).
    - Grappler's arithmetic optimizer is turned off for the whole process. With
      it on (TensorFlow 2.21), the optimized multi-worker train step computes a
      wrong gradient through the discriminator for the generator from the
      second step on (at the second step of the tiny recipe, one image of eight
      1.8% off the gradient of the same discriminator at the same point), while
      the forward pass is right. It takes the DRAGAN penalty's gradient of a
      gradient in the same step; neither one device nor `"mirrored"` shows it,
      and with the optimizer off the workers match one device to float32
      rounding.
    """
    import tensorflow as tf

    _check_mode(mode)
    if mode == "multi_worker":
        strategy = _multi_worker_strategy()
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
        return strategy
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])


def _multi_worker_strategy():
    """A `MultiWorkerMirroredStrategy` whose `reduce` takes what Keras's `fit` gives it.

    Keras 3.15's TensorFlow trainer (keras-team/keras#20585) calls
    `strategy.reduce("MEAN", batch, axis=None)` on the first `(images, tags)`
    batch, a tuple, which `reduce` does not take across workers, and
    `strategy.reduce("MEAN", log, axis=0)` on every scalar log of every step,
    which has no axis 0. This `reduce` reduces each leaf of a structure on its
    own and drops `axis` for scalars. The logs are means over the global batch
    already (the train step all-reduces them), so reducing them again keeps them.
    """
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis=None):
            def leaf(v):
                local = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
                rank = getattr(local, "shape", tf.TensorShape(None)).rank
                return super(MultiWorkerStrategy, self).reduce(
                    reduce_op, v, axis=None if rank == 0 else axis
                )

            return tf.nest.map_structure(leaf, value)

    return MultiWorkerStrategy()


@functools.cache
def jax_distribution(mode):
    """The `keras.distribution.DataParallel` of `mode`, made once per process."""
    _check_mode(mode)
    if mode != "multi_worker":
        return keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    keras.distribution.initialize()
    # Each process feeds its own rows of the global batch (`ProcessPart`); Keras's own
    # sharding takes only `tf.data` datasets.
    return keras.distribution.DataParallel(
        devices=keras.distribution.list_devices(), auto_shard_dataset=False
    )


def distribution(mode):
    """The running backend's distribution object for `mode`, or None for one device."""
    if mode is None:
        return None
    if keras.backend.backend() == "tensorflow":
        return tf_strategy(mode)
    return jax_distribution(mode)


def num_replicas(mode):
    """How many replicas (devices) share a step under `mode`."""
    dist = distribution(mode)
    if dist is None:
        return 1
    if keras.backend.backend() == "tensorflow":
        return dist.num_replicas_in_sync
    return dist.device_mesh.shape[0]


def num_processes(mode):
    """How many processes feed the step (1 but with `"multi_worker"` on JAX)."""
    if mode != "multi_worker" or keras.backend.backend() == "tensorflow":
        return 1  # TensorFlow's distributed dataset splits the data among the workers
    import jax

    return jax.process_count()


def worker_name(mode):
    """None for the process that writes the run; a name for each other worker of `"multi_worker"`.

    One device, `"mirrored"` and the chief of `"multi_worker"` (TensorFlow's chief
    worker, JAX's process 0) write the run folder itself. The other workers hold the
    same state after every step; each writes its own copy under
    `<run>/workers/<name>` (`"worker-1"` on TensorFlow, `"process-1"` on JAX), so
    that workers sharing a disk never write the same file, and each can resume.
    """
    if mode != "multi_worker":
        return None
    if keras.backend.backend() == "tensorflow":
        strategy = tf_strategy(mode)
        if strategy.extended.should_checkpoint:
            return None
        resolver = strategy.cluster_resolver
        return f"{resolver.task_type}-{resolver.task_id}"
    import jax

    jax_distribution(mode)  # initializes the processes
    return None if jax.process_index() == 0 else f"process-{jax.process_index()}"


def _multi_process_jax():
    """Whether this process is one of several of a JAX run (`"multi_worker"` on JAX)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return jax.process_count() > 1


def predict(model, inputs, batch_size=64):
    """`model.predict(inputs)` as numpy, in every process of a multi-process JAX run too.

    There Keras's `predict` splits `inputs` among the processes and then cannot
    fetch the outputs the other processes hold ("Fetching value for `jax.Array`
    that spans non-addressable ... devices"). Each process instead computes all
    the outputs on its own device, from host copies of the model's weights, which
    every process holds whole (`DataParallel` replicates them), in one call.
    """
    if not _multi_process_jax():
        return model.predict(inputs, batch_size=batch_size, verbose=0)
    import numpy as np

    trainable = [np.asarray(v) for v in model.trainable_variables]
    non_trainable = [np.asarray(v) for v in model.non_trainable_variables]
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)  # no sharding of `inputs` over the processes
    try:
        outputs, _ = model.stateless_call(trainable, non_trainable, inputs, training=False)
    finally:
        keras.distribution.set_distribution(previous)
    return np.asarray(outputs)


def check_batch_size(batch_size, replicas):
    """Raises a `RecipeError` unless `batch_size` splits evenly among `replicas`."""
    if batch_size % replicas:
        raise RecipeError(
            f"`training.batch_size` ({batch_size}) must be a multiple of the number of "
            f"replicas ({replicas}) of `training.distribute`: each device takes an equal "
            f"share of the global batch. Received: training.batch_size={batch_size}"
        )


def check_jit_compile(jit_compile):
    """Raises a `RecipeError` for XLA under a `tf.distribute` strategy (TensorFlow only).

    TensorFlow's XLA does not compile a step whose mirrored variables live on
    several devices ("Trying to access resource ... located in device ..."), and
    Keras's `"auto"` already leaves XLA off under a strategy. JAX always compiles.
    """
    if jit_compile is True and keras.backend.backend() == "tensorflow":
        raise RecipeError(
            "`training.jit_compile: true` does not work with `training.distribute` on "
            "TensorFlow: XLA cannot compile a step over mirrored variables. Set "
            "`training.jit_compile` to auto or false, or train on JAX. "
            "Received: training.jit_compile=True"
        )


@contextlib.contextmanager
def scope(mode):
    """Builds and trains inside it run on the devices of `mode` (nothing for None).

    On TensorFlow it enters the strategy's scope: models, optimizers and the
    `TagGAN` made inside hold mirrored variables, and the GAN's `fit` runs the
    step on every replica. On JAX it sets the `DataParallel` distribution, which
    must stay set from building to the end of `fit`, so wrap both.
    """
    dist = distribution(mode)
    if dist is None:
        yield None
        return
    with dist.scope():
        yield dist


def synchronize_batch_norm(model):
    """Makes `model`'s batch norm layers use the global batch's statistics (TensorFlow).

    On JAX the jitted step already normalises over the global batch. Only the
    training copy is changed: configs saved from it would not load on JAX.
    """
    if keras.backend.backend() != "tensorflow":
        return
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


class ProcessPart(keras.utils.PyDataset):
    """This process's part of each global batch of `batches` (multi-process JAX).

    Every process builds the same global batches; process `p` of `P` feeds
    rows `[p * b / P, (p + 1) * b / P)` of each, as Keras's JAX trainer expects.

    Args:
        batches: a `PyDataset` of `(images, tags)` global batches.
        process: this process's index.
        count: the number of processes.

    Examples:

        >>> import numpy as np
        >>> part = ProcessPart([(np.arange(8), np.arange(8))], process=1, count=2)
        >>> part[0][0].tolist()
        [4, 5, 6, 7]
    """

    def __init__(self, batches, process, count):
        super().__init__()
        self.batches, self.process, self.count = batches, process, count

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        images, tags = self.batches[index]
        size = len(images) // self.count
        part = slice(self.process * size, (self.process + 1) * size)
        return images[part], tags[part]


__all__ = [
    "MODES",
    "ProcessPart",
    "check_batch_size",
    "distribution",
    "jax_distribution",
    "num_processes",
    "num_replicas",
    "predict",
    "scope",
    "synchronize_batch_norm",
    "tf_strategy",
    "worker_name",
]
