import json

import numpy as np
import pytest

from kanime.data.tagger import build_tagger, fit_tagger, precision_recall
from kanime.tags import PAPER_TAGS


def test_precision_recall_counts():
    truth = np.zeros((4, 34))
    truth[:2, 0] = 1  # two blonde faces
    predicted = np.zeros((4, 34))
    predicted[[0, 2], 0] = 1  # one right, one wrong
    rows = precision_recall(predicted, truth)
    assert rows["blonde hair"] == {"precision": 0.5, "recall": 0.5, "support": 2, "predicted": 2}
    assert rows["glasses"]["precision"] is None and rows["glasses"]["recall"] is None


def test_tagger_shapes_and_score_range():
    tagger = build_tagger(32, channels=4)
    scores = tagger.predict(np.zeros((2, 32, 32, 3), "float32"), verbose=0)
    assert scores.shape == (2, 34) and np.all((scores >= 0) & (scores <= 1))
    assert tagger.get_layer("features").output.shape[-1] == 256


@pytest.mark.large
def test_tagger_learns_procedural_faces_to_high_precision(tmp_path):
    evaluation = fit_tagger(
        "procedural", tmp_path / "run", image_size=32, steps=500, batch_size=32,
        channels=16, num_procedural=1200, progress=False,
    )  # fmt: skip
    rows = evaluation["per_tag"]
    hair = [rows[name]["precision"] or 0.0 for name in PAPER_TAGS.names[:13]]
    styles = [rows[name]["precision"] or 0.0 for name in PAPER_TAGS.names[23:28]]
    assert np.mean(hair) > 0.9, hair
    assert np.mean(styles) > 0.8, styles
    assert evaluation["held_out"] == 120 and evaluation["trained_on"] == 1080
    saved = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert saved["per_tag"]["blonde hair"] == rows["blonde hair"]
    assert (tmp_path / "run" / "tagger.keras").is_file()


def test_too_few_faces_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="at least 64"):
        fit_tagger("procedural", tmp_path, num_procedural=40, batch_size=32, progress=False)
