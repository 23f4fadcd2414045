"""The TagGAN train step on the JAX backend: a pure function of the state.

Keras's JAX trainer calls `train_step(state, data)` under `jax.jit` with the
model's trainable, non-trainable, optimizer and metric variables as values.
The step picks out the generator's and discriminator's parts, differentiates
with `jax.grad` through `stateless_call`, applies each optimizer with
`stateless_apply`, and returns the new state in the same layout.
"""

import jax
import jax.numpy as jnp
import keras
from keras import ops

from kanime.training import losses


def _pick(variables, values, wanted):
    by_id = {id(v): x for v, x in zip(variables, values)}
    return [by_id[id(v)] for v in wanted]


def _put(variables, values, updates):
    """`values` with the entries of the variables in `updates` (a dict id -> value) replaced."""
    return [updates.get(id(v), x) for v, x in zip(variables, values)]


def _loss_scale(optimizer, values):
    """The factor `optimizer.scale_loss` applies, read from its variables' `values`."""
    with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, values))):
        return optimizer.scale_loss(jnp.ones((), "float32"))


def penalty_gradients(logit_fn, x):
    """Gradient of `sum(logit_fn(x))` with respect to `x` (differentiable again)."""
    return jax.grad(lambda x: jnp.sum(logit_fn(x).astype("float32")))(x)


def train_step(gan, state, data):
    trainable, non_trainable, optimizer_values, metric_values = state
    images, tags = data[0], data[1]
    images = ops.cast(images, "float32")
    tags = ops.cast(tags, "float32")
    G, D = gan.generator, gan.discriminator
    all_trainable = gan.trainable_variables
    all_non_trainable = gan.non_trainable_variables

    g_train = _pick(all_trainable, trainable, G.trainable_variables)
    g_fixed = _pick(all_non_trainable, non_trainable, G.non_trainable_variables)
    d_train = _pick(all_trainable, trainable, D.trainable_variables)
    d_fixed = _pick(all_non_trainable, non_trainable, D.non_trainable_variables)
    seed_var = gan.seed_generator.state
    (seed_value,) = _pick(all_non_trainable, non_trainable, [seed_var])

    with keras.StatelessScope(state_mapping=[(seed_var, seed_value)]) as scope:
        noise = gan.draw(images, tags)
        seed_value = scope.get_current_value(seed_var)
    z, fake_tags = noise["z"], noise["fake_tags"]
    n = images.shape[0]

    def run_d(d_values, x):
        out, _ = D.stateless_call(d_values, d_fixed, x, training=True)
        return out

    # Discriminator step.
    fake, g_fixed = G.stateless_call(g_train, g_fixed, [z, fake_tags], training=True)
    fake = jax.lax.stop_gradient(fake)
    x_hat = losses.dragan_points(images, noise["u"], noise["alpha"])

    n_g_opt = len(gan.g_optimizer.variables)
    g_opt_values, d_opt_values = optimizer_values[:n_g_opt], optimizer_values[n_g_opt:]
    d_scale = _loss_scale(gan.d_optimizer, d_opt_values)  # 1 without loss scaling
    g_scale = _loss_scale(gan.g_optimizer, g_opt_values)

    def d_objective(d_values):
        penalty_grads = penalty_gradients(lambda x: run_d(d_values, x)[0], x_hat)
        logit, tag_logits = run_d(d_values, jnp.concatenate([images, fake], axis=0))
        real_out = (logit[:n], tag_logits[:n])
        fake_out = (logit[n:], tag_logits[n:])
        loss, logs = gan.discriminator_objective(real_out, fake_out, penalty_grads, tags)
        return loss * d_scale, logs

    (_, d_logs), d_grads = jax.value_and_grad(d_objective, has_aux=True)(d_train)
    d_train, d_opt_values = gan.d_optimizer.stateless_apply(d_opt_values, d_grads, d_train)

    # Generator step, with the same noise and tags.
    def g_objective(g_values):
        fake, new_fixed = G.stateless_call(g_values, g_fixed, [z, fake_tags], training=True)
        loss, logs = gan.generator_objective(run_d(d_train, fake), fake_tags)
        return loss * g_scale, (logs, new_fixed)

    (_, (g_logs, g_fixed)), g_grads = jax.value_and_grad(g_objective, has_aux=True)(g_train)
    g_train, g_opt_values = gan.g_optimizer.stateless_apply(g_opt_values, g_grads, g_train)

    # Moving average of the generator.
    beta = gan.ema_decay(n)
    g_now = dict(zip(map(id, G.trainable_variables), g_train))
    g_now.update(zip(map(id, G.non_trainable_variables), g_fixed))
    ema_old = dict(zip(map(id, all_non_trainable), non_trainable))
    ema_updates = {}
    for w, e in gan.ema_pairs():
        new = g_now[id(w)]
        ema_updates[id(e)] = beta * ema_old[id(e)] + (1.0 - beta) * new if w.trainable else new

    # Metrics.
    mapping = list(zip(gan.metrics_variables, metric_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = gan.update_metrics({**d_logs, **g_logs})
        metric_values = [scope.get_current_value(v) for v in gan.metrics_variables]

    trainable_updates = dict(zip(map(id, G.trainable_variables), g_train))
    trainable_updates.update(zip(map(id, D.trainable_variables), d_train))
    fixed_updates = dict(zip(map(id, G.non_trainable_variables), g_fixed))
    fixed_updates.update(ema_updates)
    fixed_updates[id(seed_var)] = seed_value
    state = (
        _put(all_trainable, trainable, trainable_updates),
        _put(all_non_trainable, non_trainable, fixed_updates),
        list(g_opt_values) + list(d_opt_values),
        metric_values,
    )
    return logs, state
