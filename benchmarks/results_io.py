"""Writes a benchmark's JSON result; shared by the scripts in this folder."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_result(relative_path, report):
    """Writes `report` as indented JSON to `relative_path` under the project root."""
    out = ROOT / relative_path
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out
