import numpy as np
import pytest

from kanime.tags import PAPER_TAGS, TagGroup, TagVocabulary


def test_paper_vocabulary_layout():
    assert len(PAPER_TAGS) == 34
    assert PAPER_TAGS.names[0] == "blonde hair"
    assert PAPER_TAGS.names[12] == "gray hair"
    assert PAPER_TAGS.names[13] == "blue eyes"
    assert PAPER_TAGS.names[23:28] == (
        "long hair", "short hair", "twintails", "drill hair", "ponytail",
    )  # fmt: skip
    assert PAPER_TAGS.names[-1] == "glasses"
    assert [g.name for g in PAPER_TAGS.groups] == ["hair_color", "eye_color", "hair_style", "other"]
    assert PAPER_TAGS.group_slice("eye_color") == slice(13, 23)


def test_encode_decode_round_trip():
    names = ["pink hair", "green eyes", "twintails", "smile", "glasses"]
    vector = PAPER_TAGS.encode(names)
    assert vector.dtype == np.float32 and vector.sum() == 5
    assert PAPER_TAGS.decode(vector) == names


def test_parse_accepts_csv_column_names_and_case():
    a = PAPER_TAGS.parse("Blonde_Hair,  blue eyes , open_mouth")
    assert PAPER_TAGS.decode(a) == ["blonde hair", "blue eyes", "open mouth"]
    assert PAPER_TAGS.parse("").sum() == 0


def test_unknown_tag_suggests_closest():
    with pytest.raises(ValueError, match="Unknown tag 'blond hair'.*Did you mean 'blonde hair'"):
        PAPER_TAGS.parse("blond hair, blue eyes")


def test_two_hair_colours_is_an_error():
    with pytest.raises(ValueError, match="exclusive group 'hair_color'"):
        PAPER_TAGS.parse("blonde hair, red hair")


def test_from_scores_applies_group_rules():
    scores = np.zeros(34, "float32")
    scores[0], scores[1] = 0.3, 0.6  # brown wins over blonde
    scores[13] = 0.2  # best eye colour below 0.25: no eye tag
    scores[23], scores[25] = 0.9, 0.5  # long hair wins the exclusive style group
    scores[28], scores[29] = 0.3, 0.1  # blush on, smile off
    tags = PAPER_TAGS.decode(PAPER_TAGS.from_scores(scores))
    assert tags == ["brown hair", "long hair", "blush"]
    batch = PAPER_TAGS.from_scores(np.stack([scores, scores]))
    assert batch.shape == (2, 34)


def test_sample_follows_the_paper():
    tags = PAPER_TAGS.sample(20000, 0)
    hair = tags[:, PAPER_TAGS.group_slice("hair_color")]
    eyes = tags[:, PAPER_TAGS.group_slice("eye_color")]
    np.testing.assert_array_equal(hair.sum(1), 1)
    np.testing.assert_array_equal(eyes.sum(1), 1)
    np.testing.assert_allclose(hair.mean(0), 1 / 13, atol=0.01)
    others = tags[:, 23:]
    np.testing.assert_allclose(others.mean(0), 0.25, atol=0.015)
    np.testing.assert_array_equal(PAPER_TAGS.sample(5, 7), PAPER_TAGS.sample(5, 7))


def test_sample_ops_matches_the_paper_rule():
    import keras

    tags = keras.ops.convert_to_numpy(PAPER_TAGS.sample_ops(4000, keras.random.SeedGenerator(1)))
    assert tags.shape == (4000, 34)
    np.testing.assert_array_equal(tags[:, :13].sum(1), 1)
    np.testing.assert_array_equal(tags[:, 13:23].sum(1), 1)
    assert abs(tags[:, 23:].mean() - 0.25) < 0.02


def test_custom_vocabulary_from_config_round_trip():
    vocab = TagVocabulary(
        [
            TagGroup("color", ("red", "blue"), exclusive=True, sampling="one"),
            TagGroup("x", ("hat",)),
        ]
    )
    again = TagVocabulary.from_config(vocab.get_config())
    assert again == vocab and len(again) == 3
    with pytest.raises(ValueError, match="unknown keys"):
        TagVocabulary.from_config({"groups": [{"name": "a", "tags": ["b"], "colour": 1}]})
    with pytest.raises(ValueError, match="unique"):
        TagVocabulary([TagGroup("a", ("hat",)), TagGroup("b", ("Hat",))])
