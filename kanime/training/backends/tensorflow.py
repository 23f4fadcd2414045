"""The TagGAN train step on the TensorFlow backend: gradient tapes on variables."""

import tensorflow as tf
from keras import ops

from kanime.training import losses


def _unpack(data):
    images, tags = data[0], data[1]
    return ops.cast(images, "float32"), ops.cast(tags, "float32")


def penalty_gradients(logit_fn, x):
    """Gradient of `sum(logit_fn(x))` with respect to `x` (differentiable again)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(tf.cast(logit_fn(x), "float32"))
    return tape.gradient(total, x)


def train_step(gan, data):
    images, tags = _unpack(data)
    noise = gan.draw(images, tags)
    G, D = gan.generator, gan.discriminator

    # Discriminator step.
    fake = G([noise["z"], noise["fake_tags"]], training=True)
    x_hat = losses.dragan_points(images, noise["u"], noise["alpha"])
    n = tf.shape(images)[0]
    with tf.GradientTape() as tape:
        penalty_grads = penalty_gradients(lambda x: D(x, training=True)[0], x_hat)
        logit, tag_logits = D(tf.concat([images, fake], axis=0), training=True)
        real_out = (logit[:n], tag_logits[:n])
        fake_out = (logit[n:], tag_logits[n:])
        d_loss, d_logs = gan.discriminator_objective(real_out, fake_out, penalty_grads, tags)
        d_loss = gan.d_optimizer.scale_loss(d_loss)  # a no-op without loss scaling
    d_grads = tape.gradient(d_loss, D.trainable_variables)
    gan.d_optimizer.apply_gradients(zip(d_grads, D.trainable_variables))

    # Generator step, with the same noise and tags.
    with tf.GradientTape() as tape:
        fake = G([noise["z"], noise["fake_tags"]], training=True)
        g_loss, g_logs = gan.generator_objective(D(fake, training=True), noise["fake_tags"])
        g_loss = gan.g_optimizer.scale_loss(g_loss)
    g_grads = tape.gradient(g_loss, G.trainable_variables)
    gan.g_optimizer.apply_gradients(zip(g_grads, G.trainable_variables))

    # Moving average of the generator.
    beta = gan.ema_decay(n)
    for w, e in gan.ema_pairs():
        if w.trainable:
            e.assign(beta * e + (1.0 - beta) * w)
        else:
            e.assign(w)
    return gan.update_metrics({**d_logs, **g_logs})
