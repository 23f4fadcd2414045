"""The TagGAN train step on the PyTorch backend: `torch.autograd.grad` on variables.

Keras's torch trainer calls `train_step(data)` eagerly. Gradients are taken with
`torch.autograd.grad` with respect to one network's variables at a time, never
with `.backward()`, so nothing accumulates in `.grad` between the two networks.
The DRAGAN penalty's points are a fresh leaf, and its gradient keeps its graph
(`create_graph=True`) so that the discriminator's loss can be differentiated
through it again. Optimizer updates, the EMA (`TagGAN.update_ema`) and the step counter run
under `torch.no_grad()`.

`torch.compile` (Keras's `jit_compile=True` on this backend) does not support
the double backward of the penalty: `TagGAN.compile` refuses it.
"""

import torch

from kanime.training.backends import unpack


def _detached(logs):
    return {name: value.detach() for name, value in logs.items()}


def _gradients(loss, variables):
    return torch.autograd.grad(loss, [v.value for v in variables])


def penalty_gradients(logit_fn, x):
    """Gradient of `sum(logit_fn(x))` with respect to `x` (differentiable again)."""
    x = x.detach().requires_grad_(True)
    total = torch.sum(logit_fn(x).float())
    return torch.autograd.grad(total, x, create_graph=True)[0]


def train_step(gan, data):
    images, tags = unpack(data)
    with torch.no_grad():
        noise = gan.draw(images, tags)
    d_logs = discriminator_step(gan, images, tags, noise)
    g_logs = generator_step(gan, noise)
    with torch.no_grad():
        gan.update_ema(images.shape[0])
        gan.steps_done.assign_add(1)
        return gan.update_metrics({**d_logs, **g_logs})


def discriminator_step(gan, images, tags, noise, penalty=True):
    """One discriminator update; returns its logs. `penalty=False` leaves the DRAGAN
    gradient out (its term is then 0), which `benchmarks/train_step_parts.py` times."""
    G, D = gan.generator, gan.discriminator
    with torch.no_grad():  # the generator's batch norm statistics still move
        fake = G([noise["z"], noise["fake_tags"]], training=True)
        x_hat = gan.penalty_points(images, noise)
    seen = torch.cat([gan.augment(images, noise, "real"), gan.augment(fake, noise, "fake")], 0)
    if penalty:
        penalty_grads = penalty_gradients(lambda x: D(x, training=True)[0], x_hat)
    else:
        penalty_grads = torch.zeros_like(x_hat)
    d_loss, d_logs = gan.discriminator_objective(D(seen, training=True), penalty_grads, tags)
    grads = _gradients(gan.d_optimizer.scale_loss(d_loss), D.trainable_variables)
    with torch.no_grad():
        gan.d_optimizer.apply(grads, D.trainable_variables)
    return _detached(d_logs)


def generator_step(gan, noise):
    """One generator update with the step's noise and tags; returns its logs."""
    G, D = gan.generator, gan.discriminator
    fake = G([noise["z"], noise["fake_tags"]], training=True)
    seen = gan.augment(fake, noise, "fake")
    g_loss, g_logs = gan.generator_objective(D(seen, training=True), noise["fake_tags"])
    grads = _gradients(gan.g_optimizer.scale_loss(g_loss), G.trainable_variables)
    with torch.no_grad():
        gan.g_optimizer.apply(grads, G.trainable_variables)
    return _detached(g_logs)

