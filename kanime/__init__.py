"""kanime: anime character faces from tags, a Keras 3 rebuild of Jin et al. (2017).

Importing kanime does not import TensorFlow: the models and the training step
run on the JAX backend without it.
"""

import os

# TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) is not for users; set
# before any kanime module imports Keras. An explicit TF_CPP_MIN_LOG_LEVEL wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
