"""Load a trained kanime generator with plain Keras and make faces from tags."""

import sys

import keras
import numpy as np

run = sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart"
gen = keras.saving.load_model(f"{run}/generator.keras")

# Tag columns in the paper's order: 0 = blonde hair, 13 = blue eyes, 29 = smile.
tags = np.zeros((4, 34), "float32")
tags[:, [0, 13, 29]] = 1.0
z = np.random.default_rng(0).standard_normal((4, 128)).astype("float32")

images = gen.predict([z, tags], verbose=0)  # (4, H, W, 3) in [-1, 1]
pixels = ((images + 1.0) * 127.5).round().clip(0, 255).astype("uint8")
print(images.shape, float(images.min()), float(images.max()))
