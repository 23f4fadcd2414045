"""The TagGAN train step on the TensorFlow backend: gradient tapes on variables.

Under a `tf.distribute` strategy (see `kanime.training.distribute`) the step runs
on every replica with its part of the global batch; the replicas' draws, DRAGAN
points, gradients and logged losses are made to equal those of one device on
the global batch (`_Replicas`).
"""

import tensorflow as tf

from kanime.training import losses
from kanime.training.backends import unpack


def penalty_gradients(logit_fn, x):
    """Gradient of `sum(logit_fn(x))` with respect to `x` (differentiable again)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(tf.cast(logit_fn(x), "float32"))
    return tape.gradient(total, x)


class _Replicas:
    """The step's view of data parallelism: `count` replicas, this one being `index`.

    Without a strategy `count` is 1 and every method is the single-device code.
    """

    def __init__(self):
        self.context = tf.distribute.get_replica_context()
        self.count = self.context.num_replicas_in_sync if self.context is not None else 1

    def draw(self, gan, images, tags):
        """The global batch's draws, this replica's slice (see `TagGAN.draw`)."""
        if self.count == 1:
            return gan.draw(images, tags)
        # A copy: under MultiWorkerMirroredStrategy the input tensor has no device, which
        # all_gather refuses ("destinations can not be empty").
        all_tags = self.context.all_gather(tf.identity(tags), axis=0)
        return gan.draw(images, all_tags, self.context.replica_id_in_sync_group, self.count)

    def dragan_points(self, images, u, alpha):
        """`losses.dragan_points` with the standard deviation of the global batch."""
        if self.count == 1:
            return losses.dragan_points(images, u, alpha)
        images = tf.cast(images, "float32")
        total = self.context.all_reduce("SUM", tf.cast(tf.size(images), "float32"))
        mean = self.context.all_reduce("SUM", tf.reduce_sum(images)) / total
        variance = self.context.all_reduce("SUM", tf.reduce_sum(tf.square(images - mean))) / total
        return losses.dragan_points(images, u, alpha, std=tf.sqrt(variance))

    def for_gradient(self, loss):
        """The replica's share of a global mean: the optimizer sums the replicas' gradients."""
        return loss if self.count == 1 else loss / self.count

    def mean(self, logs):
        """The logs (means over this replica's images) as means over the global batch."""
        return logs if self.count == 1 else self.context.all_reduce("MEAN", logs)


def train_step(gan, data):
    images, tags = unpack(data)
    replicas = _Replicas()
    noise = replicas.draw(gan, images, tags)
    d_logs = discriminator_step(gan, images, tags, noise, replicas)
    g_logs = generator_step(gan, noise, replicas)
    gan.update_ema(tf.shape(images)[0] * replicas.count)
    gan.steps_done.assign_add(1)
    return gan.update_metrics(replicas.mean({**d_logs, **g_logs}))


def discriminator_step(gan, images, tags, noise, replicas=None, penalty=True):
    """One discriminator update; returns its logs. `penalty=False` leaves the DRAGAN
    gradient out (its term is then 0), which `benchmarks/train_step_parts.py` times."""
    replicas = replicas or _Replicas()
    G, D = gan.generator, gan.discriminator
    fake = G([noise["z"], noise["fake_tags"]], training=True)
    x_hat = gan.penalty_points(images, noise, replicas.dragan_points)
    seen = tf.concat([gan.augment(images, noise, "real"), gan.augment(fake, noise, "fake")], 0)
    with tf.GradientTape() as tape:
        if penalty:
            penalty_grads = penalty_gradients(lambda x: D(x, training=True)[0], x_hat)
        else:
            penalty_grads = tf.zeros_like(x_hat)
        out = D(seen, training=True)
        d_loss, d_logs = gan.discriminator_objective(out, penalty_grads, tags)
        # Scaling is a no-op without loss scaling and on one device.
        d_loss = gan.d_optimizer.scale_loss(replicas.for_gradient(d_loss))
    d_grads = tape.gradient(d_loss, D.trainable_variables)
    gan.d_optimizer.apply_gradients(zip(d_grads, D.trainable_variables))
    return d_logs


def generator_step(gan, noise, replicas=None):
    """One generator update with the step's noise and tags; returns its logs."""
    replicas = replicas or _Replicas()
    G, D = gan.generator, gan.discriminator
    with tf.GradientTape() as tape:
        fake = G([noise["z"], noise["fake_tags"]], training=True)
        seen = gan.augment(fake, noise, "fake")
        g_loss, g_logs = gan.generator_objective(D(seen, training=True), noise["fake_tags"])
        g_loss = gan.g_optimizer.scale_loss(replicas.for_gradient(g_loss))
    g_grads = tape.gradient(g_loss, G.trainable_variables)
    gan.g_optimizer.apply_gradients(zip(g_grads, G.trainable_variables))
    return g_logs

