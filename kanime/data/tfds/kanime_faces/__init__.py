"""The `kanime_faces` TFDS dataset: anime face crops with the 34 tags of Jin et al. (2017)."""

from kanime.data.tfds.kanime_faces.kanime_faces_dataset_builder import Builder

__all__ = ["Builder"]
