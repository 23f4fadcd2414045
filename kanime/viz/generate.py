"""Images from seeds and tags: single faces, tag-group grids and interpolations.

The pieces of `kanime generate`, each usable on its own:

- `parse_seeds` reads seed text (`"0-15"`, `"3,7,9"`, `"0-3,10"`);
- `image_filename` names an image by its seed and tags, so the same seed and
  tags always land in the same file (and make the same pixels);
- `vary_plan` builds the paper's figure: one row per tag of a group, every row
  with the same noise, the other tags held fixed;
- `seed_interpolation_plan` walks the noise from one seed to another (spherical
  interpolation, `slerp`), optionally moving the tags at the same time;
- `tag_interpolation_plan` moves the tags from one set to another, one row per
  seed, the noise fixed;
- `labelled_grid` tiles the images with the row labels in a left margin;
- `generate` does all of it for the command line and returns the files written.

Examples:
    >>> parse_seeds("0-3,10")
    [0, 1, 2, 3, 10]
    >>> image_filename(3, ["blonde hair", "blue eyes"])
    'seed0003_blonde-hair_blue-eyes.png'
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np

from kanime.images import image_grid, save_png
from kanime.inference import CharacterGenerator
from kanime.interpolation import lerp, slerp

MAX_SEEDS = 10_000
"""The most seeds one call may ask for."""
MAX_SEED = 2**63 - 1
MAX_STEPS = 256
MAX_SCALE = 16
DEFAULT_SEEDS = "0-7"
DEFAULT_STEPS = 8
_MAX_SLUG = 100
_SEED_PART = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_seeds(text) -> list[int]:
    """Seeds from text: integers and ranges separated by commas, e.g. `"0-3,10"`.

    Ranges include both ends. A seed asked for twice is kept once, in its first
    place. At most `MAX_SEEDS` seeds.

    Args:
        text: the seed text, or already a sequence of integers.

    Returns:
        The seeds, in the order given.

    Raises:
        ValueError: the text is not of that form, a seed is negative or too large,
            a range runs backwards, or it asks for more than `MAX_SEEDS` seeds.

    Examples:
        >>> parse_seeds("0-15")[-1], parse_seeds("3, 7,9"), parse_seeds("5,2-3,5")
        (15, [3, 7, 9], [5, 2, 3])
        >>> parse_seeds("9-3")
        Traceback (most recent call last):
        ...
        ValueError: Bad seeds '9-3': the range '9-3' runs backwards; write it low to high, e.g. 3-9.
    """
    if not isinstance(text, str):
        text = ",".join(str(int(s)) for s in text)
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(parts):
        raise ValueError(
            f"Bad seeds {text!r}: expected integers >= 0 and ranges separated by commas, "
            "e.g. 0-15 or 3,7,9."
        )
    ranges, total = [], 0
    for part in parts:
        match = _SEED_PART.match(part)
        if match is None:
            raise ValueError(
                f"Bad seeds {text!r}: {part!r} is neither a seed (an integer >= 0) "
                "nor a range such as 0-15."
            )
        low = int(match.group(1))
        high = low if match.group(2) is None else int(match.group(2))
        if high > MAX_SEED:
            raise ValueError(f"Bad seeds {text!r}: a seed must be below 2**63. Received: {high}")
        if high < low:
            raise ValueError(
                f"Bad seeds {text!r}: the range {part!r} runs backwards; write it low to high, "
                f"e.g. {high}-{low}."
            )
        total += high - low + 1
        if total > MAX_SEEDS:
            raise ValueError(
                f"Bad seeds {text!r}: that asks for more than {MAX_SEEDS} seeds at a time."
            )
        ranges.append((low, high))
    seeds = (s for low, high in ranges for s in range(low, high + 1))
    return list(dict.fromkeys(seeds))


def parse_seed_pair(text) -> tuple[int, int]:
    """The two seeds of an interpolation, from text such as `"3,9"`.

    Examples:
        >>> parse_seed_pair("3, 9")
        (3, 9)
    """
    if not isinstance(text, str):
        text = ",".join(str(s) for s in text)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(
            f"Bad seed pair {text!r}: expected two seeds (integers >= 0) separated by a comma, "
            "e.g. 3,9."
        )
    a, b = (parse_seeds(p)[0] for p in parts)
    return a, b


def format_seeds(seeds) -> str:
    """Compact text of a seed list, the inverse of `parse_seeds`.

    Examples:
        >>> format_seeds([0, 1, 2, 3, 10])
        '0-3,10'
    """
    seeds = [int(s) for s in seeds]
    runs = []
    for s in seeds:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def slugify(text: str) -> str:
    """Lower-case letters and digits joined by hyphens: `"Blonde Hair"` -> `"blonde-hair"`."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def tags_slug(names) -> str:
    """File-name text for tag names (in the given order); a hash when it would be too long.

    Examples:
        >>> tags_slug(["blonde hair", "blue eyes"])
        'blonde-hair_blue-eyes'
        >>> tags_slug([])
        ''
    """
    names = list(names)
    slug = "_".join(slugify(n) for n in names)
    if len(slug) > _MAX_SLUG:
        digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:10]
        slug = f"{len(names)}-tags-{digest}"
    return slug


def _stem(seed: int, names) -> str:
    slug = tags_slug(names)
    return f"seed{int(seed):04d}" + (f"_{slug}" if slug else "")


def image_filename(seed: int, names) -> str:
    """The PNG name of one image: its seed (4 digits or more) and its tag names.

    Pass the names in vocabulary order (`TagVocabulary.decode` gives them so)
    so that the same tags, asked in any order, give the same name.

    Examples:
        >>> image_filename(12, [])
        'seed0012.png'
    """
    return _stem(seed, names) + ".png"


@dataclasses.dataclass
class GridPlan:
    """The inputs of one grid picture and its file name.

    Args:
        z: noise `(rows * cols, latent_dim)`, row-major.
        tags: tag vectors `(rows * cols, T)`, row-major.
        rows: number of rows.
        cols: number of columns.
        row_labels: one label per row, drawn in the left margin.
        filename: the PNG file name.
    """

    z: np.ndarray
    tags: np.ndarray
    rows: int
    cols: int
    row_labels: list[str]
    filename: str


def group_name(vocabulary, name: str) -> str:
    """The vocabulary's group called `name` (`"hair color"`, `"hair-color"` and
    `"hair_color"` are the same); a `ValueError` lists the groups otherwise."""
    names = [g.name for g in vocabulary.groups]
    key = re.sub(r"[\s-]+", "_", str(name).strip().lower())
    if key not in names:
        raise ValueError(f"Unknown tag group {name!r}. Expected one of: {', '.join(names)}")
    return key


def vary_plan(characters, group: str, seeds, tags=None) -> GridPlan:
    """The paper's figure: one row per tag of `group`, one column per seed.

    Every row uses the same noise (the seeds'), and the tags from `tags` outside
    the group are held fixed; row `i` asks for the group's `i`-th tag alone.

    Args:
        characters: a `kanime.inference.CharacterGenerator`.
        group: a group of its vocabulary, e.g. `"hair_color"`.
        seeds: the seeds of the columns.
        tags: the fixed tags (text, names or a vector); the group's own are replaced.
    """
    vocabulary = characters.vocabulary
    group = group_name(vocabulary, group)
    seeds = parse_seeds(seeds)
    columns = vocabulary.group_slice(group)
    base = characters.tag_vectors(tags, 1)[0]
    base[columns] = 0.0
    names = vocabulary.names[columns]
    rows = []
    for i in range(len(names)):
        row = base.copy()
        row[columns.start + i] = 1.0
        rows.append(np.tile(row, (len(seeds), 1)))
    z = np.tile(characters.noise(seeds), (len(names), 1))
    fixed = tags_slug(vocabulary.decode(base))
    filename = f"vary-{slugify(group)}_seeds{format_seeds(seeds)}" + (f"_{fixed}" if fixed else "")
    return GridPlan(z, np.concatenate(rows), len(names), len(seeds), list(names), filename + ".png")


def seed_interpolation_plan(
    characters, a: int, b: int, steps: int = DEFAULT_STEPS, tags=None, to_tags=None
) -> GridPlan:
    """One row from seed `a` to seed `b`: the noise by `slerp`, `steps` images.

    The tags stay `tags`, or, when `to_tags` is given, move in a straight line
    from `tags` to `to_tags` at the same pace (a transition between two characters).
    """
    steps = check_steps(steps)
    vocabulary = characters.vocabulary
    t = np.linspace(0.0, 1.0, steps)
    za, zb = characters.noise([a, b])
    start = characters.tag_vectors(tags, 1)[0]
    end = start if to_tags is None else characters.tag_vectors(to_tags, 1)[0]
    names_a, names_b = vocabulary.decode(start), vocabulary.decode(end)
    filename = f"interpolate_{_stem(a, names_a)}_to_{_stem(b, names_b)}.png"
    return GridPlan(slerp(za, zb, t), lerp(start, end, t), 1, steps, [f"seed {a} to {b}"], filename)


def tag_interpolation_plan(
    characters, seeds, tags, to_tags, steps: int = DEFAULT_STEPS
) -> GridPlan:
    """One row per seed, its noise fixed, the tags moving from `tags` to `to_tags`."""
    steps = check_steps(steps)
    vocabulary = characters.vocabulary
    seeds = parse_seeds(seeds)
    t = np.linspace(0.0, 1.0, steps)
    start = characters.tag_vectors(tags, 1)[0]
    end = characters.tag_vectors(to_tags, 1)[0]
    z = np.repeat(characters.noise(seeds), steps, axis=0)
    row = lerp(start, end, t)
    slug_a = tags_slug(vocabulary.decode(start)) or "no-tags"
    slug_b = tags_slug(vocabulary.decode(end)) or "no-tags"
    filename = f"interpolate_{slug_a}_to_{slug_b}_seeds{format_seeds(seeds)}.png"
    labels = [f"seed {s}" for s in seeds]
    return GridPlan(z, np.tile(row, (len(seeds), 1)), len(seeds), steps, labels, filename)


def check_steps(steps) -> int:
    """`steps` as an int in [2, MAX_STEPS], or a `ValueError` naming it."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise ValueError(f"`steps` must be an integer. Received: steps={steps!r}")
    if not 2 <= steps <= MAX_STEPS:
        raise ValueError(
            f"`steps` counts the images of an interpolation, both ends included: expected "
            f"2 to {MAX_STEPS}. Received: steps={steps}"
        )
    return int(steps)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def labelled_grid(images, rows: int, cols: int, row_labels=None, scale: int = 1, padding=2):
    """Tiles uint8 images `(rows * cols, h, w, 3)` with each row's label in a left margin.

    Args:
        images: the images, row-major.
        rows: number of rows.
        cols: number of columns.
        row_labels: `rows` strings, or None for no margin.
        scale: enlarges each image this many times (nearest neighbour) first.
        padding: pixels between tiles.

    Returns:
        An RGB uint8 array.

    Examples:
        >>> images = np.zeros((6, 8, 8, 3), "uint8")
        >>> labelled_grid(images, 2, 3).shape
        (22, 32, 3)
        >>> labelled_grid(images, 2, 3, ["blonde hair", "red hair"], scale=4).shape[0]
        70
    """
    images = np.asarray(images)
    if scale > 1:
        images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    grid = image_grid(images, rows, cols, padding=padding)
    if not row_labels:
        return grid
    if len(row_labels) != rows:
        raise ValueError(f"Expected {rows} row labels. Received: {len(row_labels)}")
    from PIL import Image, ImageDraw

    h = images.shape[1]
    font = _font(int(np.clip(h // 3, 11, 18)))
    pen = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [pen.textbbox((0, 0), str(label), font=font) for label in row_labels]
    margin = max(box[2] for box in boxes) + 12
    canvas = Image.new("RGB", (margin + grid.shape[1], grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid), (margin, 0))
    pen = ImageDraw.Draw(canvas)
    for r, (label, box) in enumerate(zip(row_labels, boxes)):
        middle = padding + r * (h + padding) + h / 2
        y = middle - (box[1] + box[3]) / 2
        pen.text((6, round(y)), str(label), fill=(30, 30, 30), font=font)
    return np.asarray(canvas)


def _images(characters, z, tags, progress: bool, description: str, batch_size: int = 64):
    starts = range(0, len(z), batch_size)
    if progress:
        from rich.progress import track

        starts = track(starts, description=description, transient=True)
    chunks = [characters(z[i : i + batch_size], tags[i : i + batch_size]) for i in starts]
    return np.concatenate(chunks)


def generate(
    generator,
    out="generated",
    seeds=None,
    tags=None,
    vary: str | None = None,
    interpolate=None,
    to_tags=None,
    steps: int | None = None,
    scale: int = 1,
    progress: bool = False,
    engine: str = "auto",
) -> list[Path]:
    """Writes PNG images made from seeds and tags; returns the paths written.

    What is written depends on the options:

    - neither `vary`, `interpolate` nor `to_tags`: one image per seed,
      `OUT/seed0003_blonde-hair_blue-eyes.png`;
    - `vary=GROUP`: one grid, a row per tag of the group, a column per seed;
    - `interpolate=(A, B)`: one row of `steps` images from seed A to seed B
      (with `to_tags`, the tags move from `tags` to `to_tags` at the same time);
    - `to_tags` alone: a row per seed, the tags moving from `tags` to `to_tags`.

    Args:
        generator: a run folder, a `generator.keras` file or a `CharacterGenerator`.
        out: the output folder (created if missing).
        seeds: seed text (`"0-15"`) or integers; default `"0-7"`. Not with `interpolate`.
        tags: the asked tags as text (`"blonde hair, blue eyes"`), names, or None.
        vary: a tag group of the generator's vocabulary, e.g. `"hair_color"`.
        interpolate: two seeds, as `"3,9"` or a pair.
        to_tags: the tags an interpolation ends at.
        steps: images in an interpolation, both ends included; default 8.
        scale: enlarge every image this many times (nearest neighbour).
        progress: show a progress bar.
        engine: what runs a generator loaded from a path: `"auto"`, `"keras"` or
            `"tflite"` (see `kanime.inference.CharacterGenerator`).

    Raises:
        ValueError: bad seeds, steps, scale, group, tags, or options that do not go together.
        FileNotFoundError: no generator at `generator`.
    """

    if vary is not None and (interpolate is not None or to_tags is not None):
        raise ValueError(
            "--vary makes its own grid: it cannot be combined with --interpolate or --to-tags."
        )
    if interpolate is not None and seeds is not None:
        raise ValueError(
            "--interpolate names its own two seeds (e.g. --interpolate 3,9): leave out --seeds."
        )
    interpolating = interpolate is not None or to_tags is not None
    if steps is not None and not interpolating:
        raise ValueError(
            "--steps sets the length of an interpolation: use it with --interpolate or --to-tags."
        )
    steps = check_steps(DEFAULT_STEPS if steps is None else steps)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"`scale` must be an integer from 1 to {MAX_SCALE}. Received: {scale!r}")
    pair = parse_seed_pair(interpolate) if interpolate is not None else None
    seeds = parse_seeds(DEFAULT_SEEDS if seeds is None else seeds)

    if isinstance(generator, CharacterGenerator):
        characters = generator
    else:
        characters = CharacterGenerator.load(generator, engine=engine)
    out = Path(out)
    if vary is not None:
        plan = vary_plan(characters, vary, seeds, tags)
    elif pair is not None:
        plan = seed_interpolation_plan(characters, *pair, steps, tags, to_tags)
    elif to_tags is not None:
        plan = tag_interpolation_plan(characters, seeds, tags, to_tags, steps)
    else:
        vector = characters.tag_vectors(tags, 1)
        names = characters.vocabulary.decode(vector[0])
        images = _images(
            characters, characters.noise(seeds), np.repeat(vector, len(seeds), axis=0),
            progress, f"Generating {len(seeds)} images",
        )  # fmt: skip
        paths = []
        for seed, image in zip(seeds, images):
            path = out / image_filename(seed, names)
            save_png(path, image, scale=scale)
            paths.append(path)
        return paths
    images = _images(characters, plan.z, plan.tags, progress, f"Generating {len(plan.z)} images")
    path = out / plan.filename
    save_png(path, labelled_grid(images, plan.rows, plan.cols, plan.row_labels, scale))
    return [path]


__all__ = [
    "GridPlan",
    "format_seeds",
    "generate",
    "image_filename",
    "labelled_grid",
    "parse_seed_pair",
    "parse_seeds",
    "seed_interpolation_plan",
    "tag_interpolation_plan",
    "tags_slug",
    "vary_plan",
]
