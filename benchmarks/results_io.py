"""Writes a benchmark's JSON result; shared by the scripts in this folder."""

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_result(relative_path, report):
    """Writes `report` as indented JSON to `relative_path` under the project root."""
    out = ROOT / relative_path
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return out


def write_report(relative_path, what, results, **extra):
    """Writes `results` under `what` and `extra`, with the machine, its load and the command."""
    return write_result(relative_path, {
        "what": what,
        **extra,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_after": os.getloadavg(),
        "command": "python " + " ".join(sys.argv),
        "results": results,
    })  # fmt: skip
