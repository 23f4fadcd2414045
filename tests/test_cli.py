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
