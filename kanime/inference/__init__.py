"""Using a trained generator: `CharacterGenerator` and the engines that run it.

- `kanime.inference.generator`: `CharacterGenerator`, tags and seeds in, images out;
  the plain saved Keras model is the reference engine;
- `kanime.inference.fused`: the same network with batch norm folded into the
  convolutions and the sub-pixel steps fused (an engine for speed);
- `kanime.inference.tflite`: the TensorFlow Lite export and engine.
"""

from kanime.inference.generator import CharacterGenerator

__all__ = ["CharacterGenerator"]
