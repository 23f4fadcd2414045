"""Resume state of a run: every variable of the model and its optimizers in one file.

The file is a `.npz` written to a temporary name and moved into place with
`os.replace`, so a run killed while saving keeps its previous backup.
Keras's `BackupAndRestore` writes its files in place; kanime needs the
atomic write and the two optimizers, so it keeps this small format.
`save_state` / `load_state` hold a `TagGAN`; `save_variables` / `load_variables`
hold any fixed list of variables (the tagger's weights and optimizer).
"""

import json

import numpy as np
from keras import ops

from kanime.atomic import atomic_path

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A backup that cannot be used with the model at hand."""


def save_variables(variables, path, step, **meta):
    """Writes `variables` (in their order), the `step` and `meta` to `path`, atomically."""
    arrays = {f"v{i:05d}": ops.convert_to_numpy(v) for i, v in enumerate(variables)}
    info = {
        "format": FORMAT_VERSION,
        "step": int(step),
        "variables": [[v.path, list(v.shape)] for v in variables],
        **meta,
    }
    arrays["meta"] = np.array(json.dumps(info))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return info


def load_variables(variables, path):
    """Assigns the values in `path` to `variables`; returns the metadata.

    Raises:
        CheckpointError: the file cannot be read, or its variables differ in number or
            shape from `variables`.
    """
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Could not read the backup {path}: {e}") from e
    with data:
        info = json.loads(str(data["meta"]))
        if len(info["variables"]) != len(variables):
            raise CheckpointError(
                f"The backup {path} holds {len(info['variables'])} variables; this model has "
                f"{len(variables)}. It was made by a different model configuration: start a "
                "new run directory or restore the recipe it was made with."
            )
        for i, v in enumerate(variables):
            value = data[f"v{i:05d}"]
            if tuple(value.shape) != tuple(v.shape):
                raise CheckpointError(
                    f"The backup {path} does not match this model: variable {v.path} has "
                    f"shape {tuple(v.shape)}, the backup has {tuple(value.shape)}."
                )
            v.assign(value)
    return info


def model_state_variables(model):
    """What a resumed single-optimizer Keras model needs, in a fixed order: its weights
    (batch-norm statistics included) and its optimizer's variables (the step count too)."""
    return list(model.weights) + list(model.optimizer.variables)


def save_state(gan, path, **meta):
    """Writes every variable of `gan` (models, EMA, optimizers, seed) and `meta` to `path`."""
    return save_variables(gan.state_variables(), path, gan.step, **meta)


def read_meta(path):
    """The metadata dict of a backup (its step, variable list and extra keys)."""
    with np.load(path) as data:
        return json.loads(str(data["meta"]))


def load_state(gan, path):
    """Restores `gan` from `path`; returns the metadata. Raises `CheckpointError` on mismatch.

    The step count is the backup's `step` (`gan.steps_done`, not an optimizer's count)."""
    info = load_variables(gan.state_variables(), path)
    gan.steps_done.assign(info["step"])
    return info
