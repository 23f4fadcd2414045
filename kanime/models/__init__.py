"""Generator and discriminator of the tag-conditioned GAN."""

from kanime.models.discriminator import Discriminator
from kanime.models.generator import Generator

__all__ = ["Discriminator", "Generator"]
