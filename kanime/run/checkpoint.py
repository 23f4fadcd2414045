"""Resume state of a run: every variable of the model and its optimizers in one file.

`save_state` writes Keras's `model.save_weights`, which walks the model's
attributes: a `TagGAN`'s generator, discriminator, EMA generator, both optimizers,
step counter and random seed; a compiled model's weights and optimizer. The file
goes to a temporary `.weights.h5` moved into place with `os.replace`, so a run
killed while saving keeps its previous backup. The step and the run's other
metadata are attributes of the same file (`read_meta`).
"""

import json
from pathlib import Path

import h5py

from kanime.atomic import atomic_path

META = "kanime"  # the file attribute that holds the metadata, as JSON


class CheckpointError(RuntimeError):
    """A backup that cannot be used with the model at hand."""


def save_state(model, path, step, **meta):
    """Writes every variable of `model` (its optimizers' too), `step` and `meta` to `path`.

    Args:
        model: a built Keras model (a `TagGAN`, or a compiled model with its optimizer).
        path: the backup file; its name ends in `.weights.h5`.
        step: the training step the backup is made at.
        **meta: more JSON values to keep with it.

    Returns:
        The metadata written: `{"step": step, **meta}`.

    Examples:
        >>> import tempfile, keras
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile(optimizer="adam", loss="mse")
        >>> path = Path(tempfile.mkdtemp()) / "state.weights.h5"
        >>> save_state(model, path, 0, recipe="demo")
        {'step': 0, 'recipe': 'demo'}
        >>> load_state(model, path) == read_meta(path)
        True
    """
    info = {"step": int(step), **meta}
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
        with h5py.File(tmp, "r+") as f:
            f.attrs[META] = json.dumps(info)
    return info


def read_meta(path):
    """The metadata of a backup: its `step` and the keys `save_state` was given."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs[META])


def load_state(model, path):
    """Restores `model` from the backup `path`; returns its metadata, or None when there is none.

    Raises:
        CheckpointError: the file cannot be read, was made by a different model
            configuration, or is an older kanime's `.npz` backup.
    """
    path = Path(path)
    if not path.exists():
        old = sorted(path.parent.glob("*.npz"))
        if old:
            raise CheckpointError(
                f"{old[0]} is a backup of an older kanime (.npz), which this version does not "
                "read: start a new run directory, or finish the run with the kanime it was "
                "made with."
            )
        return None
    try:
        info = read_meta(path)
    except (OSError, KeyError, ValueError) as e:
        raise CheckpointError(f"Could not read the backup {path}: {e}") from e
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as e:
        raise CheckpointError(
            f"The backup {path} does not match this model; it was made by a different model "
            "configuration: start a new run directory or restore the recipe it was made with. "
            "Keras: " + " ".join(str(e).split("\n\n")[:2])  # the count and one example
        ) from e
    return info
