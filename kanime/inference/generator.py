"""A trained generator with its tag vocabulary: seeds and tags in, RGB images out.

`CharacterGenerator.load` takes a run folder made by `kanime fit` or a
`generator.keras` file. The vocabulary comes from the `recipe.yaml` beside the
model; a model without one is taken to use the paper's 34 tags when its tag
input has 34 entries. The noise of a seed is fixed
(`numpy.random.default_rng(seed).standard_normal(latent_dim)`), so the same
seed and tags always give the same character, on either backend.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from kanime.images import to_uint8
from kanime.inference.fused import NotFusableError, fuse_generator
from kanime.inference.tflite import TFLiteGenerator, tflite_available, to_tflite
from kanime.models.export import read_metadata
from kanime.recipe import load_recipe
from kanime.run.layout import RunFolder
from kanime.tags import PAPER_TAGS, TagVocabulary


class CharacterGenerator:
    """A generator model and the vocabulary of its tag input.

    Args:
        model: a Keras model `[z (n, latent_dim), tags (n, T)] -> images (n, r, r, 3)`
            in [-1, 1], such as the `generator.keras` that `kanime fit` exports.
        vocabulary: the `TagVocabulary` of the tag input (`T` tags).
        fuse: run a copy of the model rewritten for inference
            (`kanime.inference.fused.fuse_generator`: batch norm folded, same
            images to float32 rounding; on TensorFlow also compiled with XLA),
            1.3 to 1.9 times faster on a CPU. A model not laid out like
            `kanime.models.Generator` runs as it is. `False` runs `model` itself
            (for a model still training, whose weights change).
        engine: what runs the fused model: `"keras"` (compiled by XLA on
            TensorFlow, `jax.jit` on JAX), `"tflite"` (converted to TensorFlow
            Lite and run by XNNPACK's CPU kernels: `kanime.inference.tflite`, about 1.5
            times faster on a CPU), or `"auto"`: TensorFlow Lite on the
            TensorFlow backend when no GPU is visible and TensorFlow Lite can
            run, else Keras. `"tflite"` needs TensorFlow and a fusable model.

    Examples:
        >>> from kanime.models import Generator
        >>> model = Generator(resolution=32, latent_dim=8, channels=8, num_blocks=1,
        ...                   upsample_channels=16)
        >>> characters = CharacterGenerator(model)
        >>> images = characters.generate([0, 1], "blonde hair, blue eyes")
        >>> images.shape, images.dtype.name
        ((2, 32, 32, 3), 'uint8')
        >>> bool((characters.generate([0], "blonde hair, blue eyes") == images[:1]).all())
        True
    """

    def __init__(
        self,
        model,
        vocabulary: TagVocabulary = PAPER_TAGS,
        fuse: bool = True,
        engine: str = "auto",
    ):
        z_shape, tag_shape = (tuple(x.shape) for x in model.inputs)
        if tag_shape[-1] != len(vocabulary):
            raise ValueError(
                f"The model's tag input has {tag_shape[-1]} entries; the vocabulary has "
                f"{len(vocabulary)} tags."
            )
        if engine not in ENGINES:
            raise ValueError(f"`engine` must be one of {ENGINES}. Received: {engine!r}")
        if engine == "tflite" and not fuse:
            raise ValueError("`engine='tflite'` runs the fused model: it needs `fuse=True`.")
        self.model = model
        self.engine = "keras"
        self.inference_model = model
        if fuse:
            self.engine, self.inference_model = _inference_model(model, engine)
        self.vocabulary = vocabulary
        self.latent_dim = int(z_shape[-1])
        self.resolution = int(model.outputs[0].shape[1])

    @classmethod
    def load(cls, path, fuse: bool = True, engine: str = "auto") -> CharacterGenerator:
        """Loads a run folder (its `generator.keras`) or a `.keras` generator file.

        The tag vocabulary is the one the file stores (`kanime fit` writes it in);
        `fuse` and `engine` are as for the constructor.

        Raises:
            FileNotFoundError: no generator at `path`.
            ValueError: the file is not a generator, or no vocabulary fits its tag input.
        """
        path = Path(path)
        file = RunFolder(path).generator if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"No generator at {path}: expected a `.keras` file or a run folder holding "
                "generator.keras (made by `kanime fit`)."
            )
        try:
            model = keras.saving.load_model(file, compile=False)
        except Exception as e:  # noqa: BLE001 - Keras raises many kinds here
            raise ValueError(f"{file} is not a Keras model file ({e}).") from e
        if len(model.inputs) != 2 or len(model.outputs) != 1:
            raise ValueError(
                f"{file} is not a generator: expected inputs [z, tags] and one image output, "
                f"got {len(model.inputs)} inputs and {len(model.outputs)} outputs."
            )
        return cls(model, _vocabulary_of(file, model), fuse=fuse, engine=engine)

    def noise(self, seeds) -> np.ndarray:
        """The noise vectors of `seeds` (ints >= 0): `(len(seeds), latent_dim)` float32."""
        seeds = [_seed(s) for s in np.atleast_1d(seeds)]
        return np.stack(
            [np.random.default_rng(s).standard_normal(self.latent_dim) for s in seeds]
        ).astype("float32")

    def tag_vectors(self, tags, n: int) -> np.ndarray:
        """`n` multi-hot rows from tag text (`"blonde hair, blue eyes"`), names or vectors."""
        if tags is None:
            row = np.zeros(len(self.vocabulary), "float32")
        elif isinstance(tags, str):
            row = self.vocabulary.parse(tags)
        else:
            array = np.asarray(tags)
            if array.dtype.kind in "fiub":
                array = array.astype("float32")
                if array.ndim == 2:
                    if array.shape != (n, len(self.vocabulary)):
                        raise ValueError(
                            f"Expected tag vectors of shape ({n}, {len(self.vocabulary)}). "
                            f"Received: {array.shape}"
                        )
                    return array
                row = array
            else:
                row = self.vocabulary.encode(list(tags))
        if row.shape != (len(self.vocabulary),):
            raise ValueError(
                f"Expected {len(self.vocabulary)} tag values. Received shape {row.shape}"
            )
        return np.tile(row.astype("float32"), (n, 1))

    def __call__(self, z, tags, batch_size: int = 64) -> np.ndarray:
        """uint8 images `(n, r, r, 3)` from noise `(n, latent_dim)` and tags `(n, T)`.

        The model sees at most `batch_size` rows at a time, padded to a power of two:
        a compiled model (JAX, or XLA on TensorFlow) compiles once per batch shape.
        """
        z = np.asarray(z, "float32")
        tags = np.asarray(tags, "float32")
        out = [
            self._predict(z[i : i + batch_size], tags[i : i + batch_size])
            for i in range(0, len(z), batch_size)
        ]
        return to_uint8(np.concatenate(out))

    def _predict(self, z, tags):
        n = len(z)
        size = 1 << (n - 1).bit_length()  # the smallest power of two >= n
        if size > n:
            z = np.concatenate([z, np.zeros((size - n, z.shape[1]), z.dtype)])
            tags = np.concatenate([tags, np.zeros((size - n, tags.shape[1]), tags.dtype)])
        return np.asarray(self.inference_model.predict_on_batch([z, tags]))[:n]

    def generate(self, seeds, tags=None, batch_size: int = 64) -> np.ndarray:
        """uint8 images of `seeds`, each asking for `tags` (text, names, or vectors)."""
        z = self.noise(seeds)
        return self(z, self.tag_vectors(tags, len(z)), batch_size)


ENGINES = ("auto", "keras", "tflite")


def _inference_model(model, engine):
    """`(engine, what runs)`: the fused model, by TensorFlow Lite or compiled by Keras.

    A model that can't be fused runs as it is, with Keras, unless `engine` is `"tflite"`.
    """

    picked = engine
    if engine == "auto":
        picked = "tflite" if _tflite_is_best() else "keras"
    try:
        if picked == "tflite":

            return picked, TFLiteGenerator(to_tflite(model))
        fused = fuse_generator(model)
    except NotFusableError as e:
        if engine == "tflite":
            raise ValueError(f"`engine='tflite'` needs a fusable generator: {e}") from e
        return "keras", model
    # XLA makes the fused model's call about 20% faster on TensorFlow, where Keras leaves
    # it off on a CPU (JAX always compiles); each new batch size costs one compilation.
    fused.compile(jit_compile=True)
    return "keras", fused


def _tflite_is_best() -> bool:
    """TensorFlow backend, no GPU, TensorFlow Lite at hand: XNNPACK beats XLA on a CPU."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf


    return not tf.config.list_physical_devices("GPU") and tflite_available()


def _seed(value) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"A seed must be an integer >= 0. Received: {value!r}")
    if not 0 <= int(value) < 2**63:
        raise ValueError(f"A seed must be an integer in [0, 2**63). Received: {value}")
    return int(value)


def _vocabulary_of(file: Path, model) -> TagVocabulary:
    """The vocabulary the file stores (`kanime.json`, written by `kanime fit`); for files
    exported before it did, a `recipe.yaml` beside it, else the paper's 34 tags."""
    num_tags = int(model.inputs[1].shape[-1])
    metadata = read_metadata(file) or {}
    if "vocabulary" in metadata:
        vocabulary = TagVocabulary.from_config(metadata["vocabulary"])
        if len(vocabulary) != num_tags:
            raise ValueError(
                f"{file}: its stored vocabulary has {len(vocabulary)} tags; the model takes "
                f"{num_tags}."
            )
        return vocabulary
    recipe_file = RunFolder(file.parent).recipe
    if recipe_file.is_file():
        vocabulary = load_recipe(recipe_file).vocabulary
        if len(vocabulary) == num_tags:
            return vocabulary
    if num_tags == len(PAPER_TAGS):
        return PAPER_TAGS
    raise ValueError(
        f"{file} takes {num_tags} tags, stores no vocabulary, and no recipe.yaml beside it "
        "gives one of that size: export it again with `kanime fit` (which stores it)."
    )


__all__ = ["CharacterGenerator"]
