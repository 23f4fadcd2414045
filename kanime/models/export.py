"""Exports that load with plain Keras, in any process, on any backend.

A `.keras` file is a zip archive; kanime adds one member, `kanime.json`, that says what the
model's inputs mean (for a generator: its tag vocabulary), so a generator file describes
itself and needs no recipe beside it. `keras.saving.load_model` ignores the member.
"""

import json
import zipfile

import keras

from kanime.atomic import atomic_path

METADATA = "kanime.json"


def plain_functional(model, name=None):
    """The same layers and weights as a plain functional `keras.Model`.

    kanime's model classes only add a constructor and a config; the layers
    inside are built-in Keras layers. Re-wrapping them drops the kanime class,
    so the saved file needs no `import kanime` to load.
    """
    return keras.Model(model.inputs, model.outputs, name=name or model.name)


def save_model_atomic(model, path, metadata=None):
    """Saves `model` to the `.keras` file `path`; a reader never sees half a file.

    Args:
        model: a Keras model of built-in layers (see `plain_functional`).
        path: the `.keras` file.
        metadata: a JSON-able dict stored in the file as `kanime.json` (see
            `read_metadata`); None stores none.

    Examples:
        >>> import os, tempfile
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
        >>> save_model_atomic(model, path, metadata={"note": "two inputs"})
        >>> read_metadata(path), keras.saving.load_model(path).count_params()
        ({'note': 'two inputs'}, 3)
    """
    with atomic_path(path, suffix=".keras") as tmp:
        plain_functional(model).save(tmp)
        if metadata is not None:
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(METADATA, json.dumps(metadata, indent=1))


def read_metadata(path) -> dict | None:
    """The `kanime.json` dict stored in a `.keras` file, or None when it has none.

    Raises:
        ValueError: the file is not a zip archive, or its `kanime.json` is not a JSON mapping.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            if METADATA not in archive.namelist():
                return None
            text = archive.read(METADATA).decode("utf-8")
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path} is not a .keras file (not a zip archive).") from e
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: its {METADATA} is not valid JSON ({e}).") from e
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: its {METADATA} must be a JSON mapping. Received: {text[:80]}")
    return metadata
