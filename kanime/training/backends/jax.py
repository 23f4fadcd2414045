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

from kanime.training.backends import unpack


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
    images, tags = unpack(data)
    G, D = gan.generator, gan.discriminator
    all_trainable = gan.trainable_variables
    all_non_trainable = gan.non_trainable_variables

    g_values = (
        _pick(all_trainable, trainable, G.trainable_variables),
        _pick(all_non_trainable, non_trainable, G.non_trainable_variables),
    )
    d_values = (
        _pick(all_trainable, trainable, D.trainable_variables),
        _pick(all_non_trainable, non_trainable, D.non_trainable_variables),
    )
    seed_var, steps_var = gan.seed_generator.state, gan.steps_done
    seed_value, steps_value = _pick(all_non_trainable, non_trainable, [seed_var, steps_var])

    with keras.StatelessScope(state_mapping=[(seed_var, seed_value)]) as scope:
        noise = gan.draw(images, tags)
        seed_value = scope.get_current_value(seed_var)

    n_g_opt = len(gan.g_optimizer.variables)
    g_opt_values, d_opt_values = optimizer_values[:n_g_opt], optimizer_values[n_g_opt:]
    d_train, d_opt_values, g_fixed, d_logs = discriminator_step(
        gan, g_values, d_values, d_opt_values, images, tags, noise
    )
    d_values = (d_train, d_values[1])
    g_values = (g_values[0], g_fixed)
    g_values, g_opt_values, g_logs = generator_step(gan, g_values, d_values, g_opt_values, noise)
    ema_updates = ema_step(gan, g_values, all_non_trainable, non_trainable, images.shape[0])

    # Metrics.
    mapping = list(zip(gan.metrics_variables, metric_values))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = gan.update_metrics({**d_logs, **g_logs})
        metric_values = [scope.get_current_value(v) for v in gan.metrics_variables]

    trainable_updates = dict(zip(map(id, G.trainable_variables), g_values[0]))
    trainable_updates.update(zip(map(id, D.trainable_variables), d_train))
    fixed_updates = dict(zip(map(id, G.non_trainable_variables), g_values[1]))
    fixed_updates.update(ema_updates)
    fixed_updates[id(seed_var)] = seed_value
    fixed_updates[id(steps_var)] = steps_value + 1
    state = (
        _put(all_trainable, trainable, trainable_updates),
        _put(all_non_trainable, non_trainable, fixed_updates),
        list(g_opt_values) + list(d_opt_values),
        metric_values,
    )
    return logs, state


def discriminator_step(gan, g_values, d_values, d_opt_values, images, tags, noise, penalty=True):
    """One discriminator update as a pure function.

    `g_values` and `d_values` are `(trainable, non_trainable)` value lists of the
    generator and discriminator. Returns the discriminator's new trainable
    values, its optimizer's new values, the generator's new non-trainable
    values (its batch norm statistics move in the forward pass, as they do on
    TensorFlow) and the logs. `penalty=False` leaves the DRAGAN gradient
    out (its term is then 0), which `benchmarks/train_step_parts.py` times.
    """
    G, D = gan.generator, gan.discriminator
    (g_train, g_fixed), (d_train, d_fixed) = g_values, d_values
    z, fake_tags = noise["z"], noise["fake_tags"]
    fake, g_fixed = G.stateless_call(g_train, g_fixed, [z, fake_tags], training=True)
    fake = jax.lax.stop_gradient(fake)
    x_hat = gan.penalty_points(images, noise)
    seen = jnp.concatenate(
        [gan.augment(images, noise, "real"), gan.augment(fake, noise, "fake")], axis=0
    )
    scale = _loss_scale(gan.d_optimizer, d_opt_values)  # 1 without loss scaling

    def run_d(values, x):
        return D.stateless_call(values, d_fixed, x, training=True)[0]

    def objective(values):
        if penalty:
            penalty_grads = penalty_gradients(lambda x: run_d(values, x)[0], x_hat)
        else:
            penalty_grads = jnp.zeros_like(x_hat)
        loss, logs = gan.discriminator_objective(run_d(values, seen), penalty_grads, tags)
        return loss * scale, logs

    (_, logs), grads = jax.value_and_grad(objective, has_aux=True)(d_train)
    d_train, d_opt_values = gan.d_optimizer.stateless_apply(d_opt_values, grads, d_train)
    return d_train, d_opt_values, g_fixed, logs


def generator_step(gan, g_values, d_values, g_opt_values, noise):
    """One generator update as a pure function, with the step's noise and tags.

    Returns the new `(trainable, non_trainable)` generator values (its batch
    norm statistics move), the new optimizer values and the logs.
    """
    G, D = gan.generator, gan.discriminator
    g_train, g_fixed = g_values
    d_train, d_fixed = d_values
    z, fake_tags = noise["z"], noise["fake_tags"]
    scale = _loss_scale(gan.g_optimizer, g_opt_values)

    def objective(values):
        fake, new_fixed = G.stateless_call(values, g_fixed, [z, fake_tags], training=True)
        seen = gan.augment(fake, noise, "fake")
        out = D.stateless_call(d_train, d_fixed, seen, training=True)[0]
        loss, logs = gan.generator_objective(out, fake_tags)
        return loss * scale, (logs, new_fixed)

    (_, (logs, g_fixed)), grads = jax.value_and_grad(objective, has_aux=True)(g_train)
    g_train, g_opt_values = gan.g_optimizer.stateless_apply(g_opt_values, grads, g_train)
    return (g_train, g_fixed), g_opt_values, logs


def ema_step(gan, g_values, all_non_trainable, non_trainable, batch_size):
    """The moving average of the generator: a dict `id(ema variable) -> new value`.

    `non_trainable` holds the values of `all_non_trainable` (the EMA generator's
    among them); trainable weights are averaged, batch norm statistics copied.
    """
    G = gan.generator
    beta = gan.ema_decay(batch_size)
    g_now = dict(zip(map(id, G.trainable_variables), g_values[0]))
    g_now.update(zip(map(id, G.non_trainable_variables), g_values[1]))
    ema_old = dict(zip(map(id, all_non_trainable), non_trainable))
    updates = {}
    for w, e in gan.ema_pairs():
        new = g_now[id(w)]
        updates[id(e)] = beta * ema_old[id(e)] + (1.0 - beta) * new if w.trainable else new
    return updates
