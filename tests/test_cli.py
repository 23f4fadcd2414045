import yaml
from typer.testing import CliRunner

from kanime.cli import app

runner = CliRunner()


def test_dry_run_prints_the_resolved_recipe(tiny_recipe):
    result = runner.invoke(app, ["fit", str(tiny_recipe), "--set", "training.steps=4", "--dry-run"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["training"]["steps"] == 4
    assert printed["training"]["lambda_adv"] == 34.0


def test_bad_override_is_a_clear_error(tiny_recipe):
    result = runner.invoke(app, ["fit", str(tiny_recipe), "--set", "training.batchsize=4"])
    assert result.exit_code == 2
    assert "training.batch_size" in result.output


def test_missing_recipe_file(tmp_path):
    result = runner.invoke(app, ["fit", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output


def test_fit_through_the_cli(tmp_path, tiny_recipe):
    run = tmp_path / "run"
    args = ["fit", str(tiny_recipe), "--run-dir", str(run), "--no-progress", "--set",
            "training.steps=4"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Trained to step 4" in result.output
    assert (run / "generator.keras").is_file()
    again = runner.invoke(app, args[:-1] + ["training.steps=6"])
    assert again.exit_code == 0, again.output
    assert "Trained to step 6 (resumed from step 4)" in again.output


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and "kanime 0.1.0" in result.output


def test_prepare_and_review_through_the_cli(tmp_path):
    import json

    import cv2

    from kanime.data.procedural import make_faces

    src = tmp_path / "src"
    src.mkdir()
    images, _ = make_faces(6, 64, seed=1)
    for i, image in enumerate(images):
        cv2.imwrite(str(src / f"face{i}.png"), image[..., ::-1])
    (src / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = tmp_path / "out"
    args = ["prepare", str(src), str(out), "--faces", "--workers", "0", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "6 faces from 7 inputs, 1 rejected" in result.output
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["source"].endswith("broken.jpg") for r in rejected] == [True]

    sheets = runner.invoke(app, ["review", str(out)])
    assert sheets.exit_code == 0 and "1 contact sheets" in sheets.output
    first = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["id"]
    (tmp_path / "bad.txt").write_text(first + "\n")
    removed = runner.invoke(app, ["review", str(out), "--reject", str(tmp_path / "bad.txt")])
    assert removed.exit_code == 0, removed.output
    assert "5 faces remain" in removed.output

    missing = runner.invoke(app, ["prepare", str(tmp_path / "nowhere"), str(out)])
    assert missing.exit_code == 2 and "nowhere" in missing.output
    not_prepared = runner.invoke(app, ["review", str(src)])
    assert not_prepared.exit_code == 2 and "manifest.jsonl" in not_prepared.output
