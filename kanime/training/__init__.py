"""Training: the TagGAN model, its losses, callbacks and the `fit` job."""

from kanime.training.gan import TagGAN

__all__ = ["TagGAN"]
