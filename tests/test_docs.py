"""The documented examples run, and the docs show them as they are."""

import subprocess
import sys

import pytest
from conftest import ROOT

from kanime.training.fit import fit

EXAMPLE = ROOT / "docs" / "examples" / "use_generator.py"


def test_user_code_page_shows_the_tested_example():
    page = (ROOT / "docs" / "user-code.md").read_text()
    assert EXAMPLE.read_text() in page


@pytest.mark.large
def test_use_generator_example_runs_on_a_trained_run(tmp_path, tiny_recipe):
    run = tmp_path / "run"
    fit(tiny_recipe, run_dir=run, overrides=["training.steps=2"], progress=False)
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), str(run)], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("(4, 32, 32, 3)")


def test_readme_gives_one_install_one_main_job_and_one_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```bash", 1)[1].split("```", 1)[0].strip().splitlines()
    assert block == ['pip install -e ".[dev]"', "kanime fit recipes/quickstart.yaml", "pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in ci and "\npytest" in ci
