"""The `kanime` command line. Each command is a thin wrapper over a plain function."""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
import yaml

from kanime import __version__
from kanime.data.prepare import prepare as run_prepare
from kanime.data.review import apply_rejects, contact_sheets
from kanime.evaluation.report import FEATURES
from kanime.evaluation.report import evaluate as run_evaluate
from kanime.inference import CharacterGenerator
from kanime.recipe import Recipe, RecipeError, TaggerRecipe, load_recipe
from kanime.run.callbacks import TrainingStoppedError
from kanime.serve.app import is_loopback
from kanime.serve.app import serve as run_serve
from kanime.sweep import summary_table
from kanime.sweep import sweep as run_sweep
from kanime.tagger import fit_tagger as run_fit_tagger
from kanime.tagger.apply import Tagger, tag_folder
from kanime.training.fit import backup_step
from kanime.training.fit import fit as run_fit
from kanime.viz.generate import generate as run_generate
from kanime.viz.tsne import tsne as run_tsne

app = typer.Typer(
    name="kanime",
    help="Anime character faces from tags: train, resume and export a tag-conditioned GAN.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load_tagger(path, **options):
    """A `Tagger`, its load-time warnings (tags it cannot score) shown as plain lines."""
    import warnings


    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        tagger = Tagger(path, **options)
    for warning in caught:
        typer.secho(f"Warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    return tagger


# Options that `fit` and `fit-tagger` share: recipes and run folders work the same way.
RunDirOption = Annotated[
    Path | None,
    typer.Option(
        "--run-dir", help="Run folder; default runs/<recipe name>. Resumes if it has a backup."
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a recipe value: --set training.steps=3000 (repeatable)."),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the resolved recipe and exit.")
]
ProgressOption = Annotated[bool, typer.Option(help="Show a progress bar.")]


def _train(job, recipe, recipe_type, run_dir, overrides, dry_run, progress):
    """What `fit` and `fit-tagger` share: load the recipe, print it (`--dry-run`) or run
    `job` into its run folder; bad input exits with 2, a stopped run with 1, Ctrl-C with 130
    and a line that says where the same command resumes."""
    try:
        resolved = load_recipe(recipe, overrides or (), recipe_type=recipe_type)
    except RecipeError as e:
        _fail(str(e), 2)
    if dry_run:
        typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
        return None
    target = run_dir or Path("runs") / resolved.name
    try:
        return job(resolved, run_dir=target, progress=progress)
    except (ValueError, FileNotFoundError) as e:  # RecipeError is a ValueError
        _fail(str(e), 2)
    except TrainingStoppedError as e:
        _fail(str(e), 1)
    except KeyboardInterrupt:
        step = backup_step(target)
        where = f"from step {step}" if step is not None else "from the start"
        _fail(f"Interrupted. Run the same command again to resume {where}.", 130)


class Engine(str, Enum):
    auto = "auto"
    keras = "keras"
    tflite = "tflite"


# Options that `generate` and `serve` share: what runs the generator.
EngineOption = Annotated[
    Engine,
    typer.Option(
        help="What runs the generator: tflite (TensorFlow Lite, fastest on a CPU), keras "
        "(XLA or jax.jit), or auto (tflite on a CPU with TensorFlow, else keras)."
    ),
]


@app.command()
def fit(
    recipe: Annotated[
        Path, typer.Argument(help="A recipe YAML file, e.g. recipes/quickstart.yaml.")
    ],
    run_dir: RunDirOption = None,
    overrides: SetOption = None,
    dry_run: DryRunOption = False,
    progress: ProgressOption = True,
):
    """Train a recipe; running it again on a stopped run resumes from its last backup."""
    result = _train(run_fit, recipe, Recipe, run_dir, overrides, dry_run, progress)
    if result is None:
        return
    losses = ", ".join(
        f"{k}={v:.3f}" for k, v in result.losses.items() if k in ("d_loss", "g_loss", "gp")
    )
    resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
    typer.echo(f"Trained to step {result.step}{resumed}: {losses}")
    typer.echo(f"Generator: {result.run_dir / 'generator.keras'}")
    typer.echo(f"TensorBoard: tensorboard --logdir {result.run_dir / 'logs'}")


@app.command()
def prepare(
    src: Annotated[Path, typer.Argument(help="A folder of illustrations (searched recursively).")],
    out: Annotated[Path, typer.Argument(help="The dataset folder to write (resumable).")],
    faces: Annotated[
        bool, typer.Option("--faces", help="Inputs are already-cropped faces: no detection.")
    ] = False,
    labels: Annotated[
        Path | None,
        typer.Option(help="A labels CSV: a `filename` column and one 0/1 column per tag."),
    ] = None,
    tagger: Annotated[
        Path | None,
        typer.Option(
            help="A tagger (tagger.keras, its run folder, or a DeepDanbooru folder) that tags "
            "the faces --labels does not list (every face without --labels)."
        ),
    ] = None,
    metadata: Annotated[
        Path | None, typer.Option(help="A CSV with `filename,year` for --min-year.")
    ] = None,
    min_year: Annotated[int | None, typer.Option(help="Keep images from this year on.")] = None,
    size: Annotated[int, typer.Option(help="Side of the square face crops, in pixels.")] = 128,
    cascade: Annotated[
        Path | None,
        typer.Option(help="lbpcascade_animeface.xml to use instead of downloading it."),
    ] = None,
    min_face: Annotated[int, typer.Option(help="Smallest face to keep, in pixels.")] = 48,
    untagged: Annotated[
        bool, typer.Option(help="Keep faces that have no labels (for a tagger to label).")
    ] = True,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes; default: all cores.")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Find, crop, dedupe and tag the faces in SRC; write TFRecord shards to OUT.

    Every input not used becomes a row of OUT/rejected.jsonl with its reason; running the
    command again skips the inputs already done.
    """

    if min_year is not None and metadata is None:
        _fail("--min-year needs --metadata CSV (columns filename,year).", 2)
    try:
        if tagger is not None:
            tagger = _load_tagger(tagger)
        stats = run_prepare(
            src, out, faces=faces, labels=labels, size=size, cascade=cascade,
            min_face=min_face, metadata=metadata, min_year=min_year,
            allow_untagged=untagged, workers=workers, progress=progress, tagger=tagger,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)
    typer.echo(
        f"{stats['faces']} faces from {stats['inputs']} inputs, "
        f"{sum(stats['rejected'].values())} rejected: {out}"
    )


@app.command()
def tag(
    src: Annotated[Path, typer.Argument(help="A folder of face images (searched recursively).")],
    tagger: Annotated[
        Path,
        typer.Option(
            help="A tagger.keras from `kanime fit-tagger` or its run folder, or a DeepDanbooru "
            "folder (a .h5/.keras model and tags.txt)."
        ),
    ] = Path("runs/tagger"),
    out: Annotated[
        Path | None, typer.Option(help="The labels CSV to write; default SRC/labels.csv.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Faces per tagger call.")] = 64,
    threshold: Annotated[
        float | None,
        typer.Option(help="Replaces every group's threshold; default the tagger's own."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace the labels CSV if it exists.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Tag the faces in SRC with a tagger; write a labels CSV for `kanime prepare --labels`.

    Images that cannot be read are skipped and listed with the reason.
    """

    try:
        model = _load_tagger(tagger, threshold=threshold, batch_size=batch_size)
        typer.echo(f"Tagger: {model!r}")
        result = tag_folder(src, model, out, overwrite=overwrite, progress=progress)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        _fail(str(e), 2)
    for row in result["skipped"]:
        typer.echo(f"Skipped {row['source']}: {row['reason']}")
    typer.echo(f"{'tag':<14} faces  ({result['faces']} tagged, {result['no_tags']} with no tag)")
    for name, count in result["tags"].items():
        typer.echo(f"{name:<14} {count:>5}")
    typer.echo(f"Labels: {result['out']}")


@app.command()
def review(
    out: Annotated[Path, typer.Argument(help="A dataset folder made by `kanime prepare`.")],
    reject: Annotated[
        Path | None,
        typer.Option(help="A text file of face ids (one per line) to remove from the dataset."),
    ] = None,
    per_sheet: Annotated[int, typer.Option(help="Faces per contact sheet.")] = 100,
):
    """Write contact sheets of the crops with their ids, or remove the ids listed in --reject."""

    if not (out / "manifest.jsonl").is_file():
        _fail(f"{out} is not a dataset made by `kanime prepare` (no manifest.jsonl in it).", 2)
    try:
        if reject is not None:
            stats = apply_rejects(out, reject)
            typer.echo(f"Removed the listed faces; {stats['faces']} faces remain in {out}")
        else:
            sheets = contact_sheets(out, per_sheet=per_sheet)
            typer.echo(f"Wrote {len(sheets)} contact sheets to {out / 'review'}")
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)


@app.command("fit-tagger")
def fit_tagger(
    recipe: Annotated[
        Path, typer.Argument(help="A tagger recipe YAML file, e.g. recipes/tagger.yaml.")
    ],
    run_dir: RunDirOption = None,
    overrides: SetOption = None,
    dry_run: DryRunOption = False,
    progress: ProgressOption = True,
):
    """Train the multi-label tagger of a recipe on tagged faces; print per-tag precision and
    recall on the held-out faces. Running it again on a stopped run resumes from its last backup.
    """
    result = _train(run_fit_tagger, recipe, TaggerRecipe, run_dir, overrides, dry_run, progress)
    if result is None:
        return
    evaluation = result.evaluation
    typer.echo(f"{'tag':<14} precision  recall  support  (held out: {evaluation['held_out']})")
    for name, row in evaluation["per_tag"].items():
        p = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        r = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        typer.echo(f"{name:<14} {p:>9}  {r:>6}  {row['support']:>7}")
    if result.resumed_from >= result.step:
        typer.echo(f"The run had finished at step {result.step}: nothing trained.")
    else:
        resumed = f" (resumed from step {result.resumed_from})" if result.resumed_from else ""
        typer.echo(f"Trained to step {result.step}{resumed}.")
    typer.echo(f"Tagger: {result.run_dir / 'tagger.keras'}")
    typer.echo(f"TensorBoard: tensorboard --logdir {result.run_dir / 'logs'}")


@app.command()
def tsne(
    data: Annotated[
        str, typer.Argument(help="A dataset made by `kanime prepare`, or `procedural`.")
    ],
    tagger: Annotated[
        Path | None,
        typer.Option(
            help="A tagger.keras from `kanime fit-tagger` (or its run folder): use its 256-d "
            "`features` layer. Default: 16x16 colour pixels reduced by PCA."
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Faces to project (chosen with --seed).")] = 2000,
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder; default DATA/tsne, or runs/tsne for procedural."),
    ] = None,
    perplexity: Annotated[float, typer.Option(help="t-SNE perplexity.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Chooses the faces and seeds t-SNE.")] = 0,
    size: Annotated[
        int | None,
        typer.Option(help="Side the faces are loaded at; default the tagger's input, or 64."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
):
    """Project N faces to 2-D with t-SNE; draw them as thumbnails and as hair-colour points."""

    if out is None:
        out = Path("runs/tsne") if data == "procedural" else Path(data) / "tsne"
    try:
        result = run_tsne(
            data, out, tagger=tagger, n=n, perplexity=perplexity, seed=seed,
            image_size=size, progress=progress,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)
    typer.echo(f"t-SNE of {result['faces']} faces ({result['features']}):")
    for key in ("thumbnails", "hair", "arrays"):
        typer.echo(f"  {result[key]}")


@app.command()
def generate(
    generator: Annotated[
        Path, typer.Argument(help="A run folder or its generator.keras, e.g. runs/quickstart.")
    ],
    tags: Annotated[
        str | None,
        typer.Option(help='Tags to ask for, comma-separated: "blonde hair, blue eyes".'),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option(help="Seeds: 0-15, 3,7,9 or 0-3,10. Default 0-7.")
    ] = None,
    vary: Annotated[
        str | None,
        typer.Option(
            help="A tag group (hair_color, eye_color, hair_style, other): a grid with one row "
            "per tag of the group, one column per seed, the same noise in every row."
        ),
    ] = None,
    interpolate: Annotated[
        str | None,
        typer.Option(help="Two seeds A,B: a row of images from A's noise to B's (spherical)."),
    ] = None,
    to_tags: Annotated[
        str | None,
        typer.Option(
            help="Tags to interpolate to, from --tags: a row per seed (or, with --interpolate, "
            "tags and noise move together)."
        ),
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="Images in an interpolation, both ends included. Default 8.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("generated"),
    scale: Annotated[int, typer.Option(help="Enlarge the images this many times.")] = 1,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: EngineOption = Engine.auto,
):
    """Make faces from seeds and tags: one PNG per seed, or a grid with --vary, --interpolate
    or --to-tags. The same seed and tags always give the same image.
    """

    try:
        paths = run_generate(
            generator, out, seeds=seeds, tags=tags, vary=vary, interpolate=interpolate,
            to_tags=to_tags, steps=steps, scale=scale, progress=progress, engine=engine.value,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)
    for path in paths:
        typer.echo(f"Wrote {path}")


@app.command()
def evaluate(
    generator: Annotated[
        Path, typer.Argument(help="A run folder or its generator.keras, e.g. runs/quickstart.")
    ],
    data: Annotated[
        str, typer.Option(help="Real faces: a dataset made by `kanime prepare`, or `procedural`.")
    ],
    n: Annotated[int, typer.Option("--n", help="Generated and real faces for FID.")] = 10000,
    tagger: Annotated[
        Path | None,
        typer.Option(
            help="A tagger (tagger.keras, its run folder, or a DeepDanbooru folder) for the "
            "per-tag precision table; without one, only FID."
        ),
    ] = None,
    per_tag: Annotated[
        int, typer.Option(help="Generated faces asking for each tag, for the precision table.")
    ] = 256,
    features: Annotated[
        str,
        typer.Option(
            help="FID's features: inception (InceptionV3, the standard) or tagger (the "
            "tagger's features layer; comparable only with itself)."
        ),
    ] = "inception",
    inception_weights: Annotated[
        Path | None,
        typer.Option(
            help="A local inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 instead of "
            "Keras's download."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Output folder; default evaluation/ in the run folder.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Faces per generator call.")] = 64,
    seed: Annotated[
        int,
        typer.Option(
            help="Chooses the real faces (procedural: draws them; the quick-start recipes train "
            "on seed 0) and the other tags of the precision faces."
        ),
    ] = 1,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Measure a generator: FID against real faces and, with --tagger, the paper's per-tag
    precision table. Writes evaluation.json, evaluation.md and evaluation.png.
    """
    import warnings


    if features not in FEATURES:
        _fail(f"--features must be one of {', '.join(FEATURES)}. Received: {features!r}", 2)
    if features == "tagger" and tagger is None:
        _fail("--features tagger needs --tagger PATH.", 2)
    for name, value in (("--n", n), ("--per-tag", per_tag), ("--batch-size", batch_size)):
        if value < (2 if name == "--n" else 1):
            _fail(f"{name} must be at least {2 if name == '--n' else 1}. Received: {value}", 2)

    def show_warning(message, *args, **kwargs):  # e.g. tags the tagger cannot score
        typer.secho(f"Warning: {message}", fg=typer.colors.YELLOW, err=True)

    try:
        with warnings.catch_warnings():  # restores showwarning on exit
            warnings.simplefilter("always", UserWarning)
            warnings.showwarning = show_warning
            result = run_evaluate(
                generator, data, n=n, tagger=tagger, out=out, per_tag=per_tag,
                features=features, inception_weights=inception_weights, batch_size=batch_size,
                seed=seed, progress=progress,
            )  # fmt: skip
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e), 2)
    fid = result["fid"]
    typer.echo(
        f"FID ({fid['features']}, {fid['n_generated']} generated vs {fid['n_real']} real): "
        f"{fid['value']:.2f}"
    )
    precision = result["precision"]
    if precision:
        typer.echo(f"{'tag':<14} generated   real")
        for name, row in precision["tags"].items():
            real = "-" if row["real"] is None else f"{row['real']:.3f}"
            typer.echo(f"{name:<14} {row['generated']:>9.3f} {real:>6}")
        typer.echo(f"{'mean':<14} {precision['mean_generated']:>9.3f}")
    typer.echo(f"Wrote {result['files']['table']}")


@app.command()
def sweep(
    recipe: Annotated[
        Path, typer.Argument(help="The recipe YAML file the variants change, e.g. recipes/x.yaml.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Sweep folder: a run folder per variant; default runs/sweep-<recipe>."),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Values to try: --set training.lambda_gp=0.5,5 (repeatable; the variants are "
            "the product of all --set).",
        ),
    ] = None,
    variants: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            help='A variant: --variant "name:key=v;key2=v2" ("baseline:" is the recipe as it '
            "is; repeatable; each is crossed with the --set values).",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(min=1, help="Train every variant to this step; default the recipe's."),
    ] = None,
    heldout: Annotated[
        str | None,
        typer.Option(
            help="Held-out real faces for the evaluation: a `kanime prepare` folder, or "
            "`procedural`. Needs --tagger; without both, no evaluation."
        ),
    ] = None,
    tagger: Annotated[
        Path | None,
        typer.Option(
            help="The tagger that judges every variant (tagger.keras or its run folder); its "
            "features also give FID."
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Generated and real faces for FID.")] = 1000,
    per_tag: Annotated[
        int, typer.Option(help="Generated faces asking for each tag, for the precision table.")
    ] = 64,
    min_support: Annotated[
        int,
        typer.Option(help="Fewest held-out faces with a tag for it to count in the ratios."),
    ] = 20,
    progress: ProgressOption = True,
):
    """Train variants of a recipe on the same data for the same steps, evaluate each with one
    tagger, and write sweep.md, sweep.json, grids.png and curves.png. Running it again resumes
    the runs that stopped and skips the finished ones.
    """

    if (heldout is None) != (tagger is None):
        _fail("--heldout and --tagger go together: give both to evaluate, or neither.", 2)
    target = out or Path("runs") / f"sweep-{recipe.stem}"
    try:
        result = run_sweep(
            recipe, target, sets=sets or (), variants=variants or (), steps=steps,
            heldout=heldout, tagger=tagger, n=n, per_tag=per_tag, min_support=min_support,
            progress=progress, log=typer.echo,
        )  # fmt: skip
    except (RecipeError, ValueError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e), 2)  # a bad recipe, override, set, variant or path
    except KeyboardInterrupt:
        _fail("Interrupted. Run the same command again to resume the sweep.", 130)
    typer.echo(summary_table(result))
    typer.echo(f"Wrote {result['files']['table']}")


@app.command()
def serve(
    generator: Annotated[
        Path, typer.Argument(help="A run folder or its generator.keras, e.g. runs/quickstart.")
    ],
    host: Annotated[
        str, typer.Option(help="Address to listen on; the default serves this machine only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    engine: EngineOption = Engine.auto,
):
    """Serve the web page: pick tags, generate characters, morph between them."""

    try:
        characters = CharacterGenerator.load(generator, engine=engine.value)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)
    if not is_loopback(host):
        typer.secho(
            f"Warning: listening on {host}, not only on this machine: anyone who can reach "
            "it can use the page and its API.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    shown = f"[{host}]" if ":" in host else host
    runs = {"tflite": "TensorFlow Lite", "keras": "Keras"}[characters.engine]
    typer.echo(f"Serving {generator} ({runs}) on http://{shown}:{port}/ (Ctrl-C stops it)")
    run_serve(characters, host=host, port=port)


@app.command()
def version():
    """Print the versions of kanime, Keras and the backend."""
    import keras


    typer.echo(
        f"kanime {__version__}, keras {keras.__version__}, backend {keras.backend.backend()}"
    )


if __name__ == "__main__":
    app()
