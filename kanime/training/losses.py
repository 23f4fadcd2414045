"""The losses of SPEC section 4 as pure `keras.ops` functions (any backend).

Conventions: losses are float32 scalars, means over the batch. The tag loss
sums the 34 per-tag cross-entropies of an image (so `lambda_adv = 34`, "the
number of tags", weighs the adversarial term like the whole tag term).
"""

from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def _sigmoid_cross_entropy(logits, labels):
    # Numerically stable: max(x, 0) - x * y + log(1 + exp(-|x|)).
    return ops.relu(logits) - logits * labels + ops.softplus(-ops.abs(logits))


def tag_loss(tag_logits, tags, exclusive_groups=()):
    """The tag loss, summed over tags, averaged over images.

    Args:
        tag_logits: the discriminator's tag logits `(n, T)`.
        tags: the tags `(n, T)`, 0/1.
        exclusive_groups: `(start, stop)` column ranges of groups that hold at most
            one tag per face (hair colour, eye colour). Each gets one softmax
            cross-entropy, the tags of the group competing as the classes; a face
            with no tag of the group adds nothing for it. The other columns keep
            the multi-label sigmoid cross-entropy. Empty (the paper): every tag
            is an independent sigmoid.

    Examples:
        >>> import numpy as np
        >>> logits = np.array([[4.0, -4.0, 0.0]], "float32")
        >>> tags = np.array([[1.0, 0.0, 1.0]], "float32")
        >>> round(float(tag_loss(logits, tags)), 3)  # 3 sigmoid terms
        0.729
        >>> round(float(tag_loss(logits, tags, [(0, 2)])), 3)  # softmax over 0-1, sigmoid 2
        0.693
    """
    logits, labels = _f32(tag_logits), _f32(tags)
    if not exclusive_groups:
        return ops.mean(ops.sum(_sigmoid_cross_entropy(logits, labels), axis=-1))
    width = logits.shape[-1]
    in_group = [False] * width
    total = 0.0
    for start, stop in exclusive_groups:
        group_logits, group_labels = logits[:, start:stop], labels[:, start:stop]
        count = ops.sum(group_labels, axis=-1)
        target = group_labels / ops.maximum(count, 1.0)[:, None]  # several on: share it
        log_p = ops.log_softmax(group_logits, axis=-1)
        total = total + ops.mean(-ops.sum(target * log_p, axis=-1))  # 0 for an empty group
        in_group[start:stop] = [True] * (stop - start)
    independent = ops.convert_to_tensor([0.0 if g else 1.0 for g in in_group], "float32")
    per_tag = _sigmoid_cross_entropy(logits, labels) * independent
    return total + ops.mean(ops.sum(per_tag, axis=-1))


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


def r1_penalty(gradients):
    """R1: `mean(||g||_2^2)` of the real/fake logit's gradient at real images
    (Mescheder et al., 2018); `lambda_gp` then plays the role of `gamma / 2`."""
    g = _f32(gradients)
    flat = ops.reshape(g, (ops.shape(g)[0], -1))
    return ops.mean(ops.sum(ops.square(flat), axis=-1))


def gradient_penalty(gradients):
    """`mean((||g||_2 - 1)^2)` with one norm per sample over all other axes."""
    g = _f32(gradients)
    flat = ops.reshape(g, (ops.shape(g)[0], -1))
    norms = ops.sqrt(ops.sum(ops.square(flat), axis=-1) + 1e-12)
    return ops.mean(ops.square(norms - 1.0))
