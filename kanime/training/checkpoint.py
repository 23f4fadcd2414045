"""Resume state of a run: every variable of the GAN and its optimizers in one file.

The file is a `.npz` written to a temporary name and moved into place with
`os.replace`, so a run killed while saving keeps its previous backup.
Keras's `BackupAndRestore` writes its files in place; kanime needs the
atomic write and the two optimizers, so it keeps this small format.
"""

import json

import numpy as np
from keras import ops

from kanime.atomic import atomic_path

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A backup that cannot be used with the model at hand."""


def save_state(gan, path, **meta):
    """Writes every variable of `gan` (models, EMA, optimizers, seed) and `meta` to `path`."""
    variables = gan.state_variables()
    arrays = {f"v{i:05d}": ops.convert_to_numpy(v) for i, v in enumerate(variables)}
    info = {
        "format": FORMAT_VERSION,
        "step": gan.step,
        "variables": [[v.path, list(v.shape)] for v in variables],
        **meta,
    }
    arrays["meta"] = np.array(json.dumps(info))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return info


def read_meta(path):
    """The metadata dict of a backup (its step, variable list and extra keys)."""
    with np.load(path) as data:
        return json.loads(str(data["meta"]))


def load_state(gan, path):
    """Restores `gan` from `path`; returns the metadata. Raises `CheckpointError` on mismatch."""
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Could not read the backup {path}: {e}") from e
    with data:
        info = json.loads(str(data["meta"]))
        variables = gan.state_variables()
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
