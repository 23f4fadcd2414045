"""A multi-label CNN tagger: the stand-in for Illustration2Vec, whose weights are not obtainable.

`fit_tagger` trains it on tagged faces (a `kanime prepare` output, or procedural
faces), holds out a split, reports per-tag precision and recall on it, and exports
`tagger.keras`: images in [-1, 1] -> one score in [0, 1] per tag. Like the
generator, the export is made of built-in Keras layers only.
"""

import json
from pathlib import Path

import keras
import numpy as np
from keras import layers

from kanime.atomic import atomic_path
from kanime.data.batches import ArrayBatches
from kanime.models.export import save_model_atomic
from kanime.tags import PAPER_TAGS


def build_tagger(resolution=64, num_tags=34, channels=32, name="tagger"):
    """The tagger network: images in [-1, 1] -> a score in [0, 1] per tag.

    Four stages of conv3x3-BN-ReLU followed by a stride-2 conv that doubles the
    channels, global average pooling, a 256-d `features` layer (the features
    t-SNE pictures use) and a sigmoid `scores` head.

    Args:
        resolution: input side in pixels (a multiple of 16).
        num_tags: number of tags scored.
        channels: channels of the first stage.
        name: the model's name.

    Examples:

    >>> tagger = build_tagger(32, channels=8)
    >>> tagger.output_shape
    (None, 34)
    """
    images = keras.Input((resolution, resolution, 3), name="images")
    h = images
    width = channels
    for stage in range(4):
        h = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"s{stage}_conv")(h)
        h = layers.BatchNormalization(name=f"s{stage}_bn")(h)
        h = layers.ReLU(name=f"s{stage}_relu")(h)
        h = layers.Conv2D(width * 2, 3, strides=2, padding="same", name=f"s{stage}_down")(h)
        h = layers.ReLU(name=f"s{stage}_down_relu")(h)
        width *= 2
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    features = layers.Dense(256, activation="relu", name="features")(h)
    scores = layers.Dense(num_tags, activation="sigmoid", name="scores")(features)
    return keras.Model(images, scores, name=name)


def precision_recall(predicted, truth, vocabulary=PAPER_TAGS):
    """Per-tag precision, recall and support of 0/1 `predicted` tags against `truth`.

    Examples:

    >>> rows = precision_recall([[1] + [0] * 33], [[1] + [0] * 33])
    >>> rows["blonde hair"]["precision"], rows["brown hair"]["precision"]
    (1.0, None)
    """
    predicted, truth = np.asarray(predicted) > 0.5, np.asarray(truth) > 0.5
    rows = {}
    for i, name in enumerate(vocabulary.names):
        tp = int(np.sum(predicted[:, i] & truth[:, i]))
        found, support = int(predicted[:, i].sum()), int(truth[:, i].sum())
        rows[name] = {
            "precision": tp / found if found else None,
            "recall": tp / support if support else None,
            "support": support,
            "predicted": found,
        }
    return rows


def _load(data, image_size, num_procedural, seed, progress):
    if str(data) == "procedural":
        from kanime.data.procedural import make_faces

        return make_faces(num_procedural, image_size, seed=seed, progress=progress)
    from kanime.data.pipeline import load_arrays

    return load_arrays(data, image_size, allow_untagged=False, progress=progress)


def fit_tagger(
    data,
    run_dir,
    *,
    image_size=64,
    steps=1500,
    batch_size=64,
    learning_rate=2e-3,
    channels=32,
    holdout=0.1,
    seed=0,
    num_procedural=6000,
    threshold=0.5,
    vocabulary=PAPER_TAGS,
    progress=True,
):
    """Trains the tagger on tagged faces and evaluates it on a held-out split.

    Args:
        data: a prepared dataset (folder or shard pattern), or `"procedural"`.
        run_dir: where `tagger.keras`, `evaluation.json` and `settings.json` go.
        image_size: side the faces are resized to.
        steps: training steps (rounded down to whole epochs of 100 steps).
        batch_size: images per step.
        learning_rate: Adam's learning rate.
        channels: channels of the tagger's first stage.
        holdout: share of the faces held out (chosen by a seeded permutation).
        seed: seeds the split, the batches and the weights.
        num_procedural: faces drawn when `data="procedural"`.
        threshold: score a tag must reach (an exclusive group keeps its best tag only).
        vocabulary: the tag vocabulary.
        progress: show progress.

    Returns:
        The evaluation dict, with per-tag precision, recall and support on the held-out faces.
    """
    run_dir = Path(run_dir)
    keras.utils.set_random_seed(seed)
    images, tags = _load(data, image_size, num_procedural, seed, progress)
    if len(images) < 2 * batch_size:
        raise ValueError(
            f"{data}: {len(images)} tagged faces; the tagger needs at least {2 * batch_size}."
        )
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = max(batch_size, int(len(images) * holdout))
    val, train = order[:n_val], order[n_val:]
    steps_per_epoch = min(steps, 100)
    batches = ArrayBatches(images[train], tags[train], batch_size, steps_per_epoch, seed=seed)
    model = build_tagger(image_size, len(vocabulary), channels)
    model.compile(keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    epochs = max(1, steps // steps_per_epoch)
    set_epoch = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs=None: batches.set_epoch(epoch)
    )
    history = model.fit(batches, epochs=epochs, callbacks=[set_epoch], verbose=2 if progress else 0)
    val_images = images[val].astype("float32") / 127.5 - 1.0
    scores = model.predict(val_images, batch_size=256, verbose=0)
    predicted = vocabulary.from_scores(scores, threshold=threshold)
    evaluation = {
        "data": str(data),
        "held_out": int(n_val),
        "trained_on": int(len(train)),
        "steps": epochs * steps_per_epoch,
        "final_loss": float(history.history["loss"][-1]),
        "threshold": threshold,
        "per_tag": precision_recall(predicted, tags[val], vocabulary),
    }
    save_model_atomic(model, run_dir / "tagger.keras")
    settings = {"image_size": image_size, "tags": list(vocabulary.names)}
    for name, content in [("evaluation.json", evaluation), ("settings.json", settings)]:
        with atomic_path(run_dir / name) as tmp, open(tmp, "w") as f:
            json.dump(content, f, indent=2)
    return evaluation
