"""Small evaluations during `kanime fit`, logged to TensorBoard and `metrics.jsonl`.

With `logging.evaluate_every: N` in a recipe, every N steps (and at the last
step) the EMA generator is measured against the training data:

- `eval/fid`: FID of `logging.evaluate_n` generated faces against as many
  training faces (their statistics computed once and cached, see
  `kanime.evaluation.fid.real_statistics`); the generated faces ask for the
  tags of the training faces;
- with `logging.evaluate_tagger`: `eval/precision`, the mean per-tag precision,
  and `eval/precision/<tag>` for each tag (spaces as `_`), from
  `max(8, evaluate_n // tags)` faces per tag.

`EvaluationMonitor` adds these values to the epoch's logs before the run's
`RunMonitor` writes them, so they land in the same `metrics.jsonl` row and
TensorBoard step as the losses: it must come before `RunMonitor` in the
callback list.

Examples:
    ```yaml
    logging:
      log_every: 50
      evaluate_every: 500
      evaluate_n: 1000
      evaluate_features: inception   # or tagger (needs evaluate_tagger)
      evaluate_tagger: runs/tagger-quickstart
    ```
"""

from __future__ import annotations

import keras
import numpy as np

from kanime.data.faces import load_faces
from kanime.evaluation.fid import (
    frechet_distance,
    inception_extractor,
    real_statistics,
    tagger_extractor,
)
from kanime.evaluation.precision import tag_precision
from kanime.evaluation.report import generated_statistics
from kanime.inference import CharacterGenerator
from kanime.recipe import RecipeError
from kanime.run.callbacks import training_step
from kanime.tagger.apply import Tagger


class EvaluationMonitor(keras.callbacks.Callback):
    """Measures FID (and per-tag precision) of the EMA generator every `every` steps.

    Args:
        vocabulary: the run's `TagVocabulary`.
        data: the training faces: `"procedural"` or a prepared dataset path.
        seed: the seed the training faces are drawn (or chosen) with.
        every: steps between evaluations (a multiple of the epoch length).
        total_steps: the run's last step, always evaluated.
        n: faces per set for FID.
        extractor: a `kanime.evaluation.fid.FeatureExtractor`.
        tagger: an object with `tags(images)`, or None for FID only.
        cache_dir: where the real statistics are cached (see `real_statistics`).
    """

    def __init__(self, vocabulary, data, seed, every, total_steps, n, extractor,
                 tagger=None, cache_dir=None):  # fmt: skip
        super().__init__()
        self.vocabulary = vocabulary
        self.data = data
        self.seed = seed
        self.every = every
        self.total_steps = total_steps
        self.n = n
        self.extractor = extractor
        self.tagger = tagger
        self.cache_dir = cache_dir
        self.per_tag = max(8, n // len(vocabulary))
        self._real = None  # (statistics, tags) of the training faces, loaded once

    def _real_faces(self, size):
        if self._real is None:

            images, tags = load_faces(self.data, self.n, size, seed=self.seed)[:2]
            stats, _ = real_statistics(
                self.data, self.n, size, self.extractor, seed=self.seed,
                cache_dir=self.cache_dir, faces=lambda: (images, tags),
            )  # fmt: skip
            self._real = stats, tags
        return self._real

    def measure(self) -> dict:
        """The `eval/...` values of the model's EMA generator now."""

        model = getattr(self.model, "ema_generator", None) or self.model.generator
        generator = CharacterGenerator(model, self.vocabulary, fuse=False)
        real_stats, real_tags = self._real_faces(generator.resolution)
        prompt_tags = real_tags[np.arange(self.n) % len(real_tags)]
        fake_stats = generated_statistics(generator, prompt_tags, self.extractor)
        values = {"eval/fid": frechet_distance(fake_stats, real_stats)}
        if self.tagger is not None:
            rows = tag_precision(
                generator, self.tagger, self.per_tag, seed=self.seed, prior=real_tags,
                first_seed=self.n,
            )  # fmt: skip
            values["eval/precision"] = float(np.mean([r["precision"] for r in rows.values()]))
            for name, row in rows.items():
                values[f"eval/precision/{name.replace(' ', '_')}"] = row["precision"]
        return values

    def on_epoch_end(self, epoch, logs=None):

        step = training_step(self.model)
        if step % self.every and step < self.total_steps:
            return
        if logs is not None:
            logs.update(self.measure())


def evaluation_callbacks(recipe) -> list:
    """`[EvaluationMonitor]` for a recipe with `logging.evaluate_every`, else `[]`.

    The feature network and the tagger are loaded here, so a missing file fails
    before training starts.

    Raises:
        RecipeError: an interval that is not a multiple of `logging.log_every`,
            `evaluate_features: tagger` without `evaluate_tagger`, or a tagger,
            or Inception weights, that cannot be loaded.
    """

    log = recipe.logging
    if log.evaluate_every is None:
        return []
    if log.evaluate_every % log.log_every:
        raise RecipeError(
            f"logging.evaluate_every ({log.evaluate_every}) must be a multiple of "
            f"logging.log_every ({log.log_every}): the run evaluates at the end of a log interval."
        )
    if log.evaluate_features == "tagger" and not log.evaluate_tagger:
        raise RecipeError(
            "logging.evaluate_features: 'tagger' needs logging.evaluate_tagger (a tagger.keras "
            "or its run folder)."
        )

    try:
        tagger = None
        if log.evaluate_tagger:

            tagger = Tagger(log.evaluate_tagger, vocabulary=recipe.vocabulary)
        if log.evaluate_features == "tagger":
            extractor = tagger_extractor(log.evaluate_tagger)
        else:
            extractor = inception_extractor()
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise RecipeError(f"logging.evaluate_*: {e}") from e
    data = "procedural" if recipe.data.source == "procedural" else recipe.data.path
    monitor = EvaluationMonitor(
        recipe.vocabulary, data, recipe.seed, log.evaluate_every, recipe.training.steps,
        log.evaluate_n, extractor, tagger,
    )  # fmt: skip
    return [monitor]


__all__ = ["EvaluationMonitor", "evaluation_callbacks"]
