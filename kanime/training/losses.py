"""The losses of SPEC section 4 as pure `keras.ops` functions (any backend).

Conventions: losses are float32 scalars, means over the batch. The tag loss
sums the 34 per-tag cross-entropies of an image (so `lambda_adv = 34`, "the
number of tags", weighs the adversarial term like the whole tag term).
"""

from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def tag_loss(tag_logits, tags):
    """Multi-label sigmoid cross-entropy, summed over tags, averaged over images."""
    logits, labels = _f32(tag_logits), _f32(tags)
    # Numerically stable sigmoid cross-entropy: max(x, 0) - x * y + log(1 + exp(-|x|)).
    per_tag = ops.relu(logits) - logits * labels + ops.softplus(-ops.abs(logits))
    return ops.mean(ops.sum(per_tag, axis=-1))


def discriminator_adversarial_loss(real_logit, fake_logit):
    """Non-saturating GAN loss of D: `-log D(x) - log(1 - D(G(z)))`."""
    return ops.mean(ops.softplus(-_f32(real_logit))) + ops.mean(ops.softplus(_f32(fake_logit)))


def generator_adversarial_loss(fake_logit):
    """Non-saturating GAN loss of G: `-log D(G(z))`."""
    return ops.mean(ops.softplus(-_f32(fake_logit)))


def dragan_points(images, u, alpha, std=None):
    """DRAGAN's `x_hat = x + alpha * 0.5 * std(x) * u`, near the real data.

    Args:
        images: real images `(n, h, w, c)`.
        u: uniform [0, 1] noise of the same shape (one draw per element).
        alpha: uniform [0, 1] weights of shape `(n, 1, 1, 1)` (one per sample).
        std: the standard deviation to use; None computes it over `images` (a data-parallel
            step passes the global batch's).
    """
    images = _f32(images)
    std = ops.std(images) if std is None else std
    delta = 0.5 * std * _f32(u)
    return images + _f32(alpha) * delta


def gradient_penalty(gradients):
    """`mean((||g||_2 - 1)^2)` with one norm per sample over all other axes."""
    g = _f32(gradients)
    flat = ops.reshape(g, (ops.shape(g)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(flat), axis=-1) + 1e-12)
    return ops.mean(ops.square(norms - 1.0))
