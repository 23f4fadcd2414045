"""kanime: anime character faces from tags, a Keras 3 rebuild of Jin et al. (2017).

Importing kanime does not import TensorFlow: the models and the training step
run on the JAX backend without it.
"""

__version__ = "0.1.0"
