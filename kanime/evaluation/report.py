"""`kanime evaluate`: FID and the per-tag precision table of a generator, written to a folder.

`evaluate` measures a generator against real faces and writes three files:

- `evaluation.json`: every number (FID, and per tag the faces asked, found and
  the precision, generated and real);
- `evaluation.md`: the paper's table (tag, precision of generated faces,
  precision on real faces) under the FID;
- `evaluation.png`: a grouped bar chart of the two precision columns.

FID compares `n` generated faces with `n` real ones; the generated faces ask for
the tags of the real faces, one real face each, so both sets have the same tag
mix. The precision table needs a tagger (see `kanime.evaluation.precision`);
without one only FID is measured.

Examples:
    ```python
    from kanime.evaluation import evaluate

    result = evaluate("runs/quickstart", "procedural", n=2000, tagger="runs/tagger-quickstart")
    print(result["fid"]["value"], result["precision"]["mean_generated"])
    ```
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from kanime.atomic import atomic_path
from kanime.data.faces import load_faces
from kanime.evaluation.checkerboard import checkerboard_score
from kanime.evaluation.fid import (
    FeatureExtractor,
    Statistics,
    frechet_distance,
    inception_extractor,
    real_statistics,
    tagger_extractor,
)
from kanime.evaluation.precision import real_precision, tag_precision
from kanime.inference import CharacterGenerator
from kanime.progress import progress_bar
from kanime.run.layout import RunFolder
from kanime.tagger.apply import Tagger

FEATURES = ("inception", "tagger")
"""What FID's features may come from: InceptionV3 (the standard) or the tagger."""

JSON_FILE = "evaluation.json"
TABLE_FILE = "evaluation.md"
CHART_FILE = "evaluation.png"
CHUNK = 500  # generated faces held in memory at once
CHECKERBOARD_FACES = 256  # generated and real faces whose spectra give the checkerboard score


class _Steps:
    """A rich progress bar with one task per stage; silent when disabled."""

    def __init__(self, enabled: bool):
        self.progress = None
        if enabled:

            self.progress = progress_bar()

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def stage(self, description: str, total: int):
        """A callable that advances a new task by the count it is given."""
        if self.progress is None:
            return None
        task = self.progress.add_task(description, total=total)
        return lambda done: self.progress.advance(task, done)


def _load_generator(generator):
    if isinstance(generator, (str, os.PathLike)):

        return CharacterGenerator.load(generator, fuse=False), Path(generator)
    for attribute in ("vocabulary", "noise", "resolution"):
        if not hasattr(generator, attribute):
            raise TypeError(
                "generator must be a run folder, a generator.keras file or an object with "
                f"vocabulary, resolution, noise(seeds) and __call__(z, tags); "
                f"{type(generator).__name__} has no `{attribute}`."
            )
    return generator, None


def _default_out(path: Path | None) -> Path:
    if path is None:
        raise ValueError("out is required when the generator is an object, not a path.")
    return RunFolder(path if path.is_dir() else path.parent).evaluation


def _extractor(features, tagger_path, inception_weights, batch_size) -> FeatureExtractor:
    if isinstance(features, FeatureExtractor):
        return features
    if features == "inception":
        return inception_extractor(inception_weights, batch_size=batch_size)
    if features == "tagger":
        if tagger_path is None:
            raise ValueError("features='tagger' needs a tagger file (--tagger PATH).")
        return tagger_extractor(tagger_path)
    raise ValueError(
        f"features must be one of {FEATURES} or a FeatureExtractor. Received: {features!r}"
    )


def generated_statistics(generator, tags, extractor, first_seed=0, batch_size=64, progress=None,
                         on_images=None):
    """Feature statistics of faces generated for the rows of `tags`, noise seeds
    `first_seed + [0, n)`, made and measured `CHUNK` faces at a time; `on_images`, when
    given, is called with each chunk of faces."""
    features = []
    for start in range(0, len(tags), CHUNK):
        rows = tags[start : start + CHUNK]
        z = generator.noise(first_seed + start + np.arange(len(rows)))
        images = generator(z, rows, batch_size=batch_size)
        if on_images is not None:
            on_images(images)
        features.append(extractor.features(images))
        if progress is not None:
            progress(len(rows))
    return Statistics.of(np.concatenate(features))


def evaluate(
    generator,
    data,
    n: int = 10000,
    tagger=None,
    out=None,
    per_tag: int = 256,
    features="inception",
    inception_weights=None,
    cache_dir=None,
    batch_size: int = 64,
    seed: int = 1,
    progress: bool = True,
) -> dict:
    """FID and the per-tag precision table of a generator; writes them to `out`.

    Args:
        generator: a run folder, a `generator.keras` file, or an object with the
            interface of `kanime.inference.CharacterGenerator` (`vocabulary`,
            `resolution`, `noise(seeds)`, `__call__(z, tags, batch_size)`).
        data: real faces: a `kanime prepare` output or `"procedural"`.
        n: faces of each set for FID (a dataset with fewer real faces gives all
            of them; the generated set still has `n`).
        tagger: a tagger path (`tagger.keras`, its run folder, a DeepDanbooru
            folder) or an object with `tags(images)`; None: FID only.
        out: the folder to write to; default `evaluation/` in the run folder.
        per_tag: faces generated for each tag of the precision table.
        features: FID's features: `"inception"` (InceptionV3, the standard),
            `"tagger"` (the tagger's `features` layer, for machines that cannot
            download Inception) or a `FeatureExtractor`.
        inception_weights: a local copy of the InceptionV3 weights (no top).
        cache_dir: where real statistics are cached (see `real_statistics`);
            False: no cache.
        batch_size: faces per generator call.
        seed: chooses the real faces (draws the procedural ones: the quick-start
            recipes train on seed 0, so the default 1 gives unseen faces) and
            the tags of the precision table's faces.
        progress: show progress bars.

    Returns:
        The content of `evaluation.json`, and `files`: the paths written.

    Raises:
        FileNotFoundError: no generator, data, tagger or Inception weights where named.
        ValueError: a bad argument, or a generator and tagger with different tags.
    """
    n, per_tag = int(n), int(per_tag)
    if n < 2:
        raise ValueError(f"n must be at least 2 (FID needs a covariance). Received: n={n}")
    if per_tag < 1:
        raise ValueError(f"per_tag must be at least 1. Received: per_tag={per_tag}")
    generator, generator_path = _load_generator(generator)
    out = Path(out) if out is not None else _default_out(generator_path)
    vocabulary = generator.vocabulary
    tagger_path = tagger if isinstance(tagger, (str, os.PathLike)) else None
    if tagger_path is not None:

        tagger = Tagger(tagger_path, vocabulary=vocabulary)
    extractor = _extractor(features, tagger_path, inception_weights, batch_size)


    size = generator.resolution
    images, real_tags, _, names = load_faces(data, n, size, seed=seed, progress=progress)
    if tuple(names) != tuple(vocabulary.names):
        raise ValueError(
            f"{data}: the faces carry {len(names)} tags ({', '.join(names[:3])}, ...); the "
            f"generator takes {len(vocabulary)} ({', '.join(vocabulary.names[:3])}, ...): they "
            "must be the same tags in the same order."
        )
    with _Steps(progress) as steps:
        real_stats, cached = real_statistics(
            data, n, size, extractor, seed=seed, cache_dir=cache_dir,
            faces=lambda: (images, real_tags),
            progress=steps.stage(f"{extractor.name} features of {len(images)} real faces",
                                 len(images)),
        )  # fmt: skip
        prompt_tags = real_tags[np.arange(n) % len(real_tags)]
        some = min(CHECKERBOARD_FACES, len(images))
        first = []  # the first generated faces, for the checkerboard score
        fake_stats = generated_statistics(
            generator, prompt_tags, extractor, batch_size=batch_size,
            progress=steps.stage(f"{extractor.name} features of {n} generated faces", n),
            on_images=lambda chunk: first or first.append(chunk[:some]),
        )  # fmt: skip
        result = {
            "generator": str(generator_path) if generator_path else type(generator).__name__,
            "data": str(data),
            "resolution": size,
            "seed": int(seed),
            "fid": {
                "value": frechet_distance(fake_stats, real_stats),
                "features": extractor.name,
                "n_generated": n,
                "n_real": real_stats.count,
                "real_statistics_cached": cached,
                "noise_seeds": [0, n],
            },
            "precision": None,
        }
        result["checkerboard"] = {
            "generated": checkerboard_score(first[0]),
            "real": checkerboard_score(images[:some]),
            "faces": some,
        }
        if tagger is not None:
            total = per_tag * len(vocabulary)
            generated = tag_precision(
                generator, tagger, per_tag, seed=seed, prior=real_tags, first_seed=n,
                batch_size=batch_size,
                progress=steps.stage(f"precision: {per_tag} faces per tag", total),
            )  # fmt: skip
            real = real_precision(images, real_tags, tagger, vocabulary)
            result["precision"] = _precision_table(generated, real, vocabulary, per_tag, n)
            result["precision"]["tagger"] = str(tagger_path or type(tagger).__name__)
    files = write_report(result, out)
    return {**result, "files": {key: str(path) for key, path in files.items()}}


def _precision_table(generated, real, vocabulary, per_tag, first_seed) -> dict:
    tags = {}
    for name in vocabulary.names:
        g, r = generated[name], real[name]
        tags[name] = {
            "group": vocabulary.group_of(name).name,
            "generated": g["precision"],
            "asked": g["asked"],
            "found": g["found"],
            "real": r["precision"],
            "real_support": r["support"],
            "real_found": r["found"],
        }
    real_values = [row["real"] for row in tags.values() if row["real"] is not None]
    return {
        "per_tag": per_tag,
        "noise_seeds": [first_seed, first_seed + per_tag * len(vocabulary)],
        "mean_generated": float(np.mean([row["generated"] for row in tags.values()])),
        "mean_real": float(np.mean(real_values)) if real_values else None,
        "tags": tags,
    }


# --- the files ------------------------------------------------------------------------------


def _number(value, digits=3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown_table(result: dict) -> str:
    """The evaluation as markdown: the FID line and the paper's per-tag precision table.

    Examples:
        >>> result = {"generator": "g", "data": "procedural", "fid": {"value": 12.5,
        ...     "features": "inception_v3", "n_generated": 10, "n_real": 10}, "precision": None}
        >>> print(markdown_table(result))
        # Evaluation of g
        <BLANKLINE>
        FID (inception_v3 features, 10 generated and 10 real faces of procedural): **12.50**
        <BLANKLINE>
    """
    fid = result["fid"]
    lines = [
        f"# Evaluation of {result['generator']}",
        "",
        f"FID ({fid['features']} features, {fid['n_generated']} generated and {fid['n_real']} "
        f"real faces of {result['data']}): **{fid['value']:.2f}**",
        "",
    ]
    board = result.get("checkerboard")
    if board:
        lines += [
            f"Checkerboard score (`kanime.evaluation.checkerboard`, about 1 without one): "
            f"{board['generated']:.2f} generated, {board['real']:.2f} real",
            "",
        ]
    precision = result.get("precision")
    if precision:
        lines += [
            f"Per-tag precision: {precision['per_tag']} generated faces ask for each tag; the "
            f"tagger ({precision['tagger']}) finds it in this share of them. *Real* is the "
            "same share for real faces that carry the tag: the ceiling.",
            "",
            "| Tag | Precision (generated) | Precision (real) |",
            "| --- | ---: | ---: |",
        ]
        for name, row in precision["tags"].items():
            lines.append(f"| {name} | {_number(row['generated'])} | {_number(row['real'])} |")
        lines.append(
            f"| **mean** | **{_number(precision['mean_generated'])}** | "
            f"**{_number(precision['mean_real'])}** |"
        )
        lines.append("")
    return "\n".join(lines)


def bar_chart(path, precision: dict, title: str = "") -> Path:
    """Writes the per-tag precision, generated and real, as a grouped bar chart PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(precision["tags"])
    generated = [precision["tags"][t]["generated"] for t in names]
    real = [precision["tags"][t]["real"] for t in names]
    real = [np.nan if v is None else v for v in real]
    x = np.arange(len(names))
    figure = Figure(figsize=(max(8.0, 0.38 * len(names) + 2), 5.0), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.bar(x - 0.2, generated, 0.4, label="generated", color="#d9548f")
    ax.bar(x + 0.2, real, 0.4, label="real (ceiling)", color="#8a8f99")
    ax.set_xticks(x, names, rotation=65, ha="right", fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("precision")
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", ncol=2, fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return Path(path)


def write_report(result: dict, out) -> dict:
    """Writes `evaluation.json`, `evaluation.md` and (with a precision table)
    `evaluation.png` into `out`, atomically; returns their paths."""
    out = Path(out)
    files = {"json": out / JSON_FILE, "table": out / TABLE_FILE}
    with atomic_path(files["json"]) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    with atomic_path(files["table"]) as tmp:
        Path(tmp).write_text(markdown_table(result), encoding="utf-8")
    if result.get("precision"):
        files["chart"] = out / CHART_FILE
        fid = result["fid"]
        title = f"{result['generator']}: FID {fid['value']:.2f} ({fid['features']} features)"
        bar_chart(files["chart"], result["precision"], title)
    else:
        with contextlib.suppress(FileNotFoundError):
            (out / CHART_FILE).unlink()  # an older run's chart would not match this table
    return files


__all__ = ["FEATURES", "bar_chart", "evaluate", "markdown_table", "write_report"]
