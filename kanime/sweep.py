"""`kanime sweep`: train variants of one recipe on the same data and compare them.

An ablation trains several variants of one recipe for the same number of steps
(so every variant sees the same images), evaluates each against held-out faces
with one fixed tagger, and writes one table and one picture of them all.

Variants come from two kinds of strings:

- a *set*, `"training.lambda_gp=0.5,5"`: a key and comma-separated values, each
  read as YAML by the recipe loader. The variants are the Cartesian product of
  all sets;
- an explicit *variant*, `"name:key=v;key2=v2"` (the name may be left out; an
  empty list, `"baseline:"`, is the recipe as it is). With sets too, every
  explicit variant is crossed with the product of the sets.

With neither there is one variant, the recipe itself, named `baseline`. A name
not given is made from the overrides (`lambda_gp=5,fake_tags=data`). Each variant
trains into `out_dir/<name>/` with `kanime.training.fit.fit`, which resumes from
the run's backup: running the same sweep again continues where it stopped, and a
finished run returns at once. A variant that stops itself (a NaN, a penalty that
ran away) is recorded as diverged and the sweep goes on.

`out_dir` then holds:

- `sweep.json`: the inputs, and per variant its overrides, summary (per tag
  group the generated precision as a share of the real ceiling, FID, images
  seen, seconds per step, final and largest penalty), loss curves and
  per-tag precision table;
- `sweep.md`: the summary table and a per-tag table with one column per variant;
- `grids.png`: each variant's latest sample grid;
- `curves.png`: the DRAGAN penalty and the discriminator's mean real and fake
  logits against the step, one line per variant.

Examples:
    ```python
    from kanime.sweep import sweep

    result = sweep(
        "recipes/quickstart.yaml", "runs/sweep-quickstart",
        sets=["training.lambda_adv=1,34"], variants=["baseline:", "data:training.fake_tags=data"],
        steps=2000, heldout="procedural", tagger="runs/tagger-quickstart", n=1000,
    )
    for row in result["variants"]:
        print(row["name"], row["summary"]["ratios"], row["summary"]["fid"])
    ```
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import re
import statistics
import textwrap
import time
from pathlib import Path

import keras
import yaml

from kanime.atomic import atomic_path
from kanime.evaluation.report import JSON_FILE, evaluate
from kanime.recipe import RecipeError, load_recipe
from kanime.run.callbacks import TrainingStoppedError
from kanime.run.layout import RunFolder
from kanime.run.metrics_log import read_metrics
from kanime.training.fit import backup_step, fit

JSON_NAME = "sweep.json"
TABLE_NAME = "sweep.md"
GRIDS_NAME = "grids.png"
CURVES_NAME = "curves.png"
BASELINE = "baseline"

RATIO_GROUPS = {
    "hair": ("hair_color",),
    "eye": ("eye_color",),
    "other": ("hair_style", "other"),
}
"""The tag groups of each ratio to the real ceiling: hair colour, eye colour, other tags."""

CURVE_KEYS = ("gp", "d_real_logit", "d_fake_logit", "d_loss", "g_loss", "g_tag_loss",
              "d_tag_loss")  # fmt: skip
"""The logged means kept as curves (older runs lack the two logits)."""

_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._=,+-]+")
_RESERVED = {JSON_NAME, TABLE_NAME, GRIDS_NAME, CURVES_NAME}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One variant of a sweep: its name (its run folder) and its `key=value` overrides."""

    name: str
    overrides: tuple[str, ...] = ()


# --- variants ---------------------------------------------------------------------------------


def _split(text: str, separator: str) -> list[str]:
    """`text` split at `separator`s outside brackets and quotes (YAML values keep theirs)."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote is not None:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth = max(depth - 1, 0)
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _override(item: str, source: str, received: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or not value:
        raise RecipeError(
            f"{source}: expected `key.path=value`, e.g. `training.lambda_gp=5`. "
            f"Received: {received!r}"
        )
    return key, value


def parse_set(text: str) -> tuple[str, list[str]]:
    """The key and the values of a set such as `"training.lambda_gp=0.5,5"`.

    Commas inside brackets or quotes do not split (`"model.generator={channels: 32,
    num_blocks: 4},{channels: 64}"` has two values).

    Raises:
        RecipeError: no `=`, no key, or an empty value.

    Examples:
        >>> parse_set("training.lambda_gp=0.5, 5")
        ('training.lambda_gp', ['0.5', '5'])
        >>> parse_set("data.flip=[true],[false]")
        ('data.flip', ['[true]', '[false]'])
    """
    key, values = _override(text, "--set", text)
    values = [value.strip() for value in _split(values, ",")]
    if not all(values):
        raise RecipeError(f"--set: an empty value in {text!r}; write `null` for None.")
    return key, values


def parse_variant(text: str) -> tuple[str | None, tuple[str, ...]]:
    """The name (None when not given) and the overrides of a variant string.

    A variant is `"name:key=v;key2=v2"`, or `"key=v;key2=v2"` without a name; the
    part before the first `:` is the name when it holds no `=`. `"name:"` has no
    overrides: the recipe as it is.

    Raises:
        RecipeError: an override that is not `key=value`, or no name and no override.

    Examples:
        >>> parse_variant("big:model.latent_dim=256;training.batch_size=32")
        ('big', ('model.latent_dim=256', 'training.batch_size=32'))
        >>> parse_variant("model.generator={channels: 32}")
        (None, ('model.generator={channels: 32}',))
        >>> parse_variant("baseline:")
        ('baseline', ())
    """
    head, sep, rest = text.partition(":")
    if sep and "=" not in head:
        name, body = head.strip() or None, rest
    else:
        name, body = None, text
    overrides = []
    for item in _split(body, ";"):
        if item.strip():
            key, value = _override(item, "--variant", text)
            overrides.append(f"{key}={value}")
    if name is None and not overrides:
        raise RecipeError(
            f"--variant: expected `name:key=v;key2=v2`, `key=v` or `name:`. Received: {text!r}"
        )
    return name, tuple(overrides)


def clean_name(name: str) -> str:
    """`name` with each run of characters outside `[A-Za-z0-9._=,+-]` made one `-`.

    Examples:
        >>> clean_name("lr=2e-4,generator={channels: 32}")
        'lr=2e-4,generator=-channels-32-'
    """
    return _NAME_CHARACTERS.sub("-", name)


def variant_name(overrides) -> str:
    """A name made from overrides: the last dotted part of each key, `=`, the value.

    Examples:
        >>> variant_name(["training.lambda_gp=5", "data.flip=false"])
        'lambda_gp=5,flip=false'
        >>> variant_name([])
        'baseline'
    """
    parts = []
    for item in overrides:
        key, _, value = item.partition("=")
        parts.append(f"{key.strip().rsplit('.', 1)[-1]}={value.strip()}")
    return clean_name(",".join(parts)) if parts else BASELINE


def expand_variants(sets=(), variants=()) -> list[Variant]:
    """The variants of a sweep: the explicit ones, each crossed with the product of the sets.

    Args:
        sets: strings `"key=a,b,..."` (see `parse_set`).
        variants: strings `"name:key=v;key2=v2"` (see `parse_variant`).

    Returns:
        A list of `Variant`s, the explicit variants' overrides first. A variant
        crossed with sets is named `"<its name>,<the sets' part>"`; without a name,
        from all its overrides. Neither sets nor variants: `[Variant("baseline")]`.

    Raises:
        RecipeError: a malformed string, a key given twice, or two variants with one name.

    Examples:
        >>> for v in expand_variants(["training.lambda_gp=1,5", "data.flip=true,false"]):
        ...     print(v.name)
        lambda_gp=1,flip=true
        lambda_gp=1,flip=false
        lambda_gp=5,flip=true
        lambda_gp=5,flip=false
        >>> expand_variants(variants=["base:"], sets=["seed=1"])
        [Variant(name='base,seed=1', overrides=('seed=1',))]
    """
    sets = [sets] if isinstance(sets, str) else list(sets)
    variants = [variants] if isinstance(variants, str) else list(variants)
    axes = [parse_set(text) for text in sets]
    keys = [key for key, _ in axes]
    for key in keys:
        if keys.count(key) > 1:
            raise RecipeError(f"--set: `{key}` is set twice; give all its values in one --set.")
    combos = [
        tuple(f"{key}={value}" for key, value in zip(keys, values))
        for values in itertools.product(*(values for _, values in axes))
    ]
    bases = [parse_variant(text) for text in variants] or [(None, ())]
    out = []
    for name, base in bases:
        clash = sorted({item.partition("=")[0] for item in base} & set(keys))
        if clash:
            raise RecipeError(
                f"--variant {name or variant_name(base)!r} sets {', '.join(clash)}, which a "
                "--set also sets: give each key in one place."
            )
        for combo in combos:
            if name is None:
                full = variant_name((*base, *combo))
            else:
                full = clean_name(f"{name},{variant_name(combo)}" if combo else name)
            out.append(Variant(full, (*base, *combo)))
    seen = {}
    for variant in out:
        if variant.name.strip(".") == "" or variant.name in _RESERVED:
            raise RecipeError(f"{variant.name!r} cannot name a variant's run folder.")
        if variant.name in seen:
            raise RecipeError(
                f"Two variants are both named {variant.name!r} ({list(seen[variant.name])} and "
                f'{list(variant.overrides)}); name them: --variant "name:key=value".'
            )
        seen[variant.name] = variant.overrides
    return out


# --- one variant's summary ---------------------------------------------------------------------


def ceiling_ratios(tags: dict, min_support: int = 20) -> dict:
    """Per tag group, the generated precision as a share of the real ceiling.

    For each group of `RATIO_GROUPS`: the mean `generated` precision over the
    group's tags whose `real_support` is at least `min_support`, divided by the
    mean `real` precision of the same tags.

    Args:
        tags: `{tag: {"group", "generated", "real", "real_support"}}`, as in
            `evaluation.json`'s `precision.tags`.
        min_support: fewest held-out faces carrying a tag for it to count.

    Returns:
        `{"hair": ratio, "eye": ratio, "other": ratio, "tags": {group: count}}`;
        a ratio is None when no tag of its group qualifies (or their ceiling is 0).

    Examples:
        >>> tags = {
        ...     "red hair": {"group": "hair_color", "generated": 0.4, "real": 0.8,
        ...                  "real_support": 30},
        ...     "blue hair": {"group": "hair_color", "generated": 0.9, "real": 0.9,
        ...                   "real_support": 5},
        ... }
        >>> ceiling_ratios(tags, min_support=20)
        {'hair': 0.5, 'eye': None, 'other': None, 'tags': {'hair': 1, 'eye': 0, 'other': 0}}
    """
    out, counts = {}, {}
    for key, groups in RATIO_GROUPS.items():
        rows = [
            row for row in tags.values()
            if row["group"] in groups and row.get("real") is not None
            and row["real_support"] >= min_support
        ]  # fmt: skip
        counts[key] = len(rows)
        real = sum(row["real"] for row in rows)
        generated = sum(row["generated"] for row in rows)
        out[key] = generated / real if rows and real > 0 else None
    return {**out, "tags": counts}


def metric_curves(rows: list[dict]) -> dict:
    """`{key: [[step, value], ...]}` for each of `CURVE_KEYS`, from `metrics.jsonl` rows;
    a key a row lacks is skipped (a key no row has gives an empty list)."""
    return {
        key: [[row["step"], row[key]] for row in rows if row.get(key) is not None]
        for key in CURVE_KEYS
    }


def _last(curve):
    return curve[-1][1] if curve else None


def summarize(run_dir, evaluation=None, min_support: int = 20, step=None, batch_size=None):
    """The summary of one trained variant, its curves and its per-tag table.

    Args:
        run_dir: the variant's run folder (`recipe.yaml`, `logs/metrics.jsonl`).
        evaluation: its `evaluation.json` content, or None.
        min_support: see `ceiling_ratios`.
        step: the step it reached; default the last logged step.
        batch_size: images per step; default the run's `recipe.yaml`'s.

    Returns:
        `{"summary": {...}, "curves": {...}, "tags": {...} or None}`.
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    curves = metric_curves(rows)
    if step is None:
        step = rows[-1]["step"] if rows else 0
    recipe_file = RunFolder(run_dir).recipe
    if recipe_file.is_file():
        with open(recipe_file, encoding="utf-8") as f:
            batch_size = yaml.safe_load(f)["training"]["batch_size"]
    seconds = [row["perf/seconds_per_step"] for row in rows if "perf/seconds_per_step" in row]
    gp = [value for _, value in curves["gp"]]
    tags = ratios = fid = checkerboard = None
    if evaluation is not None:
        fid = evaluation["fid"]["value"]
        checkerboard = (evaluation.get("checkerboard") or {}).get("generated")
        precision = evaluation.get("precision")
        if precision:
            keep = ("group", "generated", "real", "real_support")
            tags = {name: {k: row[k] for k in keep} for name, row in precision["tags"].items()}
            ratios = ceiling_ratios(tags, min_support)
    summary = {
        "step": step,
        "batch_size": batch_size,
        "images_seen": step * batch_size if batch_size is not None else None,
        "seconds_per_step": statistics.median(seconds) if seconds else None,
        "fid": fid,
        "checkerboard": checkerboard,
        "ratios": ratios,
        "gp_final": _last(curves["gp"]),
        "gp_max": max(gp) if gp else None,
        "d_real_logit_final": _last(curves["d_real_logit"]),
        "d_fake_logit_final": _last(curves["d_fake_logit"]),
    }
    return {"summary": summary, "curves": curves, "tags": tags}


def latest_sample(run_dir) -> tuple[int, Path] | None:
    """The step and path of the run's latest `samples/step-*.png`, or None."""
    found = []
    for path in RunFolder(run_dir).samples.glob("step-*.png"):
        match = re.fullmatch(r"step-(\d+)\.png", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found) if found else None


# --- the sweep ---------------------------------------------------------------------------------


def _evaluation_inputs(heldout, tagger, n, per_tag, min_support):
    if (heldout is None) != (tagger is None):
        raise ValueError(
            "The evaluation needs both heldout (held-out faces) and tagger; "
            f"received heldout={heldout!r}, tagger={tagger!r}."
        )
    if int(n) < 2:
        raise ValueError(f"n must be at least 2 (FID needs a covariance). Received: n={n}")
    if int(per_tag) < 1:
        raise ValueError(f"per_tag must be at least 1. Received: per_tag={per_tag}")
    if int(min_support) < 0:
        raise ValueError(f"min_support must be at least 0. Received: {min_support}")
    if tagger is None:
        return
    if not os.path.exists(tagger):
        raise FileNotFoundError(f"No tagger at {tagger}.")
    if str(heldout) != "procedural" and not os.path.exists(heldout):
        raise FileNotFoundError(f"No held-out faces at {heldout}.")


def _cached_evaluation(run_dir: Path, heldout, tagger, n, per_tag) -> dict | None:
    """The run's `evaluation.json` when it is newer than `generator.keras` and was made
    with the same held-out faces, tagger, `n` and `per_tag`; else None."""
    run = RunFolder(run_dir)
    path, generator = run.evaluation / JSON_FILE, run.generator
    if not path.is_file() or path.stat().st_mtime_ns <= generator.stat().st_mtime_ns:
        return None
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        precision = result["precision"] or {}
        same = (
            result["data"] == str(heldout)
            and result["fid"]["n_generated"] == int(n)
            and result["fid"]["features"] == "tagger"
            and precision.get("per_tag") == int(per_tag)
            and precision.get("tagger") == str(tagger)
            and "checkerboard" in result
        )
    except (ValueError, KeyError, TypeError):
        return None
    return result if same else None


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def sweep(
    recipe_path,
    out_dir,
    sets=(),
    variants=(),
    steps: int | None = None,
    heldout=None,
    tagger=None,
    n: int = 1000,
    per_tag: int = 64,
    min_support: int = 20,
    progress: bool = True,
    log=print,
) -> dict:
    """Trains the variants of a recipe, evaluates them and writes the comparison.

    Every variant's recipe is loaded (and so checked) before anything trains.
    Each variant then trains into `out_dir/<name>/`, resuming from its backup;
    one that stops itself (`TrainingStoppedError`) is recorded as diverged,
    and still evaluated if it exported a generator. An evaluation newer than the
    generator, made with the same settings, is read back instead of redone.

    Args:
        recipe_path: the recipe YAML file.
        out_dir: the sweep folder: a run folder per variant and the outputs.
        sets: strings `"key=a,b"`: the variants are their Cartesian product.
        variants: strings `"name:key=v;key2=v2"`, each crossed with the sets.
        steps: train every variant to this step (`training.steps`); None: the
            recipe's (or the variant's) own.
        heldout: held-out real faces (a `kanime prepare` folder or
            `"procedural"`) for the evaluation; with `tagger`, or neither.
        tagger: the tagger that judges every variant (a `tagger.keras` or its
            run folder); its `features` layer also gives FID.
        n: generated and real faces for FID.
        per_tag: generated faces asking for each tag.
        min_support: fewest held-out faces with a tag for it to count in the ratios.
        progress: show training and evaluation progress bars.
        log: called with one line as each variant starts and ends.

    Returns:
        The content of `sweep.json` (`inputs`, `variants`: per variant its name,
        overrides, run folder, step, divergence, `summary`, `curves` and `tags`),
        and `files`: the paths written.

    Raises:
        RecipeError: a malformed set or variant, or a bad override (before any training).
        ValueError: only one of `heldout` and `tagger`, or a bad `n`, `per_tag`, `min_support`.
        FileNotFoundError: no tagger or held-out faces where named.
    """
    out_dir = Path(out_dir)
    extra = [f"training.steps={int(steps)}"] if steps is not None else []
    expanded = expand_variants(sets, variants)
    recipes = {v.name: load_recipe(recipe_path, [*v.overrides, *extra]) for v in expanded}
    _evaluation_inputs(heldout, tagger, n, per_tag, min_support)
    evaluating = tagger is not None

    rows = []
    for i, variant in enumerate(expanded, 1):
        recipe = recipes[variant.name]
        run_dir = out_dir / variant.name
        run = RunFolder(run_dir)
        label = f"[{i}/{len(expanded)}] {variant.name}"
        shown = "; ".join(variant.overrides) or "the recipe as it is"
        log(f"{label}: training to step {recipe.training.steps} ({shown}) in {run_dir}")
        row = {
            "name": variant.name,
            "overrides": list(variant.overrides),
            "run_dir": str(run_dir),
            "step": None,
            "diverged": False,
            "stop_reason": None,
            "stopped_at": None,
            "evaluation": None,
        }
        if i > 1:
            keras.backend.clear_session()  # the previous variant's models and graphs
        start = time.perf_counter()
        try:
            result = fit(
                recipe_path, run_dir=run_dir, overrides=[*variant.overrides, *extra],
                progress=progress,
            )  # fmt: skip
        except TrainingStoppedError as e:
            stopped_at = backup_step(run_dir)
            row.update(diverged=True, stop_reason=str(e), stopped_at=stopped_at,
                       step=stopped_at or 0)  # fmt: skip
            kept = "no backup" if stopped_at is None else f"last backup at step {stopped_at}"
            log(f"{label}: diverged ({kept}): {e}")
        else:
            row["step"] = result.step
            took = time.perf_counter() - start
            log(f"{label}: at step {result.step} (resumed from {result.resumed_from}, "
                f"{took:.0f} s)")  # fmt: skip

        evaluation = None
        if evaluating and run.generator.is_file():
            evaluation = _cached_evaluation(run_dir, heldout, tagger, n, per_tag)
            if evaluation is None:
                log(f"{label}: evaluating against {heldout}")
                evaluation = evaluate(
                    run_dir, heldout, n=n, tagger=tagger, out=run.evaluation,
                    per_tag=per_tag, features="tagger", progress=progress,
                )  # fmt: skip
            row["evaluation"] = str(run.evaluation / JSON_FILE)
        elif evaluating:
            log(f"{label}: no generator.keras to evaluate")
        row.update(summarize(run_dir, evaluation, min_support, step=row["step"],
                             batch_size=recipe.training.batch_size))  # fmt: skip
        summary = row["summary"]
        if evaluation is not None:
            ratios = summary["ratios"] or {}
            shown = ", ".join(f"{k} {_number(ratios.get(k))}" for k in RATIO_GROUPS)
            log(f"{label}: FID {_general(summary['fid'])}; share of the ceiling: {shown}")
        rows.append(row)

    result = {
        "inputs": {
            "recipe": str(recipe_path),
            "out_dir": str(out_dir),
            "sets": [sets] if isinstance(sets, str) else list(sets),
            "variants": [variants] if isinstance(variants, str) else list(variants),
            "steps": steps,
            "heldout": None if heldout is None else str(heldout),
            "tagger": None if tagger is None else str(tagger),
            "n": int(n),
            "per_tag": int(per_tag),
            "min_support": int(min_support),
        },
        "variants": rows,
    }
    files = write_outputs(result, out_dir)
    return {**result, "files": {key: str(path) for key, path in files.items()}}


# --- the outputs -------------------------------------------------------------------------------


def _number(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _general(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def summary_table(result: dict) -> str:
    """The sweep's main table as markdown: one row per variant.

    Examples:
        >>> row = {"name": "baseline", "step": 4, "diverged": False, "stopped_at": None,
        ...        "summary": {"images_seen": 32, "ratios": None, "fid": None, "gp_final": 0.5,
        ...                    "gp_max": 1.0, "d_real_logit_final": None, "checkerboard": 1.5,
        ...                    "d_fake_logit_final": None, "seconds_per_step": 0.25}}
        >>> print(summary_table({"variants": [row]}).splitlines()[-1])
        | baseline | 4 | 32 | no | - | - | - | - | 1.5 | 0.5 | 1 | - | - | 0.250 |
    """
    lines = [
        "| Variant | Steps | Images seen | Diverged | Hair / ceiling | Eye / ceiling "
        "| Other / ceiling | FID | Checkerboard | Final gp | Max gp | D real logit "
        "| D fake logit | s/step |",
        "| --- | ---: | ---: | --- |" + " ---: |" * 10,
    ]
    for row in result["variants"]:
        s = row["summary"]
        ratios = s["ratios"] or {}
        if not row["diverged"]:
            diverged = "no"
        elif row["stopped_at"] is None:
            diverged = "yes"
        else:
            diverged = f"yes (backup at {row['stopped_at']})"
        images = "-" if s["images_seen"] is None else f"{s['images_seen']}"
        cells = [
            row["name"], str(row["step"]), images, diverged,
            *(_number(ratios.get(key)) for key in RATIO_GROUPS),
            _general(s["fid"]), _general(s.get("checkerboard")),
            _general(s["gp_final"]), _general(s["gp_max"]),
            _general(s["d_real_logit_final"]), _general(s["d_fake_logit_final"]),
            _number(s["seconds_per_step"]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tag_table(result: dict) -> str | None:
    """The per-tag table as markdown: the real ceiling and its support, then the
    generated precision of each variant; None when no variant was evaluated."""
    evaluated = [row for row in result["variants"] if row.get("tags")]
    if not evaluated:
        return None
    names = list(dict.fromkeys(tag for row in evaluated for tag in row["tags"]))
    ceiling = {}
    for row in evaluated:
        for tag, values in row["tags"].items():
            ceiling.setdefault(tag, values)
    min_support = result.get("inputs", {}).get("min_support", 0)
    header = ["Tag", "Real (support)", *(row["name"] for row in result["variants"])]
    lines = [
        "| " + " | ".join(header) + " |",
        "| --- | ---: |" + " ---: |" * len(result["variants"]),
    ]
    for tag in names:
        real = ceiling[tag]
        mark = "" if real["real_support"] >= min_support else " *"
        cells = [tag, f"{_number(real['real'])} ({real['real_support']}){mark}"]
        for row in result["variants"]:
            values = (row.get("tags") or {}).get(tag)
            cells.append(_number(values["generated"]) if values else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    """The whole `sweep.md`: inputs, the summary table, divergences, the per-tag table."""
    inputs = result["inputs"]
    steps = inputs["steps"] if inputs["steps"] is not None else "the recipe's"
    lines = [
        f"# Sweep of {inputs['recipe']}",
        "",
        f"{len(result['variants'])} variants trained to {steps} steps on the same data.",
    ]
    if inputs["tagger"] is not None:
        lines.append(
            f"Evaluated against {inputs['heldout']} with the tagger {inputs['tagger']}: FID of "
            f"{inputs['n']} faces on the tagger's features, and per tag {inputs['per_tag']} "
            "generated faces asking for it. *X / ceiling* is the mean precision of generated "
            "faces over the group's tags divided by the tagger's mean precision on real faces "
            f"with those tags (tags with at least {inputs['min_support']} held-out faces; "
            "*other* is hair style and other tags)."
        )
    lines += ["", summary_table(result)]
    diverged = [row for row in result["variants"] if row["diverged"]]
    if diverged:
        lines.append("Diverged:\n")
        lines += [f"- {row['name']}: {row['stop_reason']}" for row in diverged]
        lines.append("")
    tags = tag_table(result)
    if tags is not None:
        lines += [
            "## Per-tag precision",
            "",
            "Generated precision per variant; *Real* is the ceiling, with the held-out faces "
            f"carrying the tag (* fewer than {inputs['min_support']}: left out of the ratios).",
            "",
            tags,
        ]
    return "\n".join(lines)


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> Path:
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)


def grids_picture(path, panels) -> Path:
    """Writes the sample grids side by side, four to a row, each titled.

    Args:
        path: the PNG to write.
        panels: `(title, image path or None)` pairs; None shows "no samples".
    """
    from matplotlib.image import imread

    images = [None if file is None else imread(file) for _, file in panels]
    cols = max(1, min(len(panels), 4))
    rows = max(1, math.ceil(len(panels) / cols))
    side = max([image.shape[1] for image in images if image is not None] or [256])
    inches = min(max(side / 100, 2.5), 8.0)
    figure = _figure(cols * inches, rows * (inches + 0.5))
    for i, ((title, _), image) in enumerate(zip(panels, images)):
        ax = figure.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        if image is None:
            ax.text(0.5, 0.5, "no samples", ha="center", va="center")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_title(textwrap.fill(title, 36), fontsize=9)
    return _save(figure, path)


def curves_picture(path, result: dict) -> Path:
    """Writes the penalty and the discriminator's real and fake logits against the
    step, a panel each, one line per variant."""
    panels = (("gp", "DRAGAN penalty (gp)"), ("d_real_logit", "D logit, real faces"),
              ("d_fake_logit", "D logit, generated faces"))  # fmt: skip
    figure = _figure(5.0 * len(panels), 4.0)
    for k, (key, title) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), k + 1)
        drawn = False
        for i, row in enumerate(result["variants"]):
            curve = row["curves"].get(key) or []
            if curve:
                label = f"{row['name']} (diverged)" if row["diverged"] else row["name"]
                ax.plot([p[0] for p in curve], [p[1] for p in curve], label=label,
                        color=f"C{i % 10}", marker="o", markersize=3)  # fmt: skip
                drawn = True
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "not logged by these runs", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return _save(figure, path)


def write_outputs(result: dict, out_dir) -> dict:
    """Writes `sweep.json`, `sweep.md`, `grids.png` and `curves.png` into `out_dir`,
    atomically; returns their paths."""
    out_dir = Path(out_dir)
    files = {
        "json": out_dir / JSON_NAME,
        "table": out_dir / TABLE_NAME,
        "grids": out_dir / GRIDS_NAME,
        "curves": out_dir / CURVES_NAME,
    }
    _write_text(files["json"], json.dumps(result, indent=2) + "\n")
    _write_text(files["table"], markdown(result))
    panels = []
    for row in result["variants"]:
        sample = latest_sample(row["run_dir"])
        title = row["name"] if sample is None else f"{row['name']} (step {sample[0]})"
        panels.append((title, None if sample is None else sample[1]))
    grids_picture(files["grids"], panels)
    curves_picture(files["curves"], result)
    return files


__all__ = [
    "Variant",
    "ceiling_ratios",
    "expand_variants",
    "markdown",
    "parse_set",
    "parse_variant",
    "summarize",
    "summary_table",
    "sweep",
    "variant_name",
    "write_outputs",
]
