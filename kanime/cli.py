"""The `kanime` command line. Each command is a thin wrapper over a plain function."""

import os
from pathlib import Path
from typing import Annotated

import typer

# TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

app = typer.Typer(
    name="kanime",
    help="Anime character faces from tags: train, resume and export a tag-conditioned GAN.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int) -> None:
    typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def fit(
    recipe: Annotated[
        Path, typer.Argument(help="A recipe YAML file, e.g. recipes/quickstart.yaml.")
    ],
    run_dir: Annotated[
        Path | None,
        typer.Option(
            "--run-dir", help="Run folder; default runs/<recipe name>. Resumes if it has a backup."
        ),
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a recipe value: --set training.batch_size=32 (repeatable)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved recipe and exit.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
):
    """Train a recipe; running it again on a stopped run resumes from its last backup."""
    from kanime.recipe import RecipeError, load_recipe

    try:
        resolved = load_recipe(recipe, overrides or ())
    except RecipeError as e:
        _fail(str(e), 2)
    if dry_run:
        import yaml

        typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False))
        return

    from kanime.training.callbacks import NonFiniteLossError
    from kanime.training.fit import backup_step
    from kanime.training.fit import fit as run_fit

    target = run_dir or Path("runs") / resolved.name
    try:
        result = run_fit(resolved, run_dir=target, progress=progress)
    except RecipeError as e:
        _fail(str(e), 2)
    except NonFiniteLossError as e:
        _fail(str(e), 1)
    except KeyboardInterrupt:
        step = backup_step(target)
        where = f"from step {step}" if step is not None else "from the start"
        _fail(f"Interrupted. Run the same command again to resume {where}.", 130)
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
    from kanime.data.prepare import prepare as run_prepare

    if min_year is not None and metadata is None:
        _fail("--min-year needs --metadata CSV (columns filename,year).", 2)
    try:
        stats = run_prepare(
            src, out, faces=faces, labels=labels, size=size, cascade=cascade,
            min_face=min_face, metadata=metadata, min_year=min_year,
            allow_untagged=untagged, workers=workers, progress=progress,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)
    typer.echo(
        f"{stats['faces']} faces from {stats['inputs']} inputs, "
        f"{sum(stats['rejected'].values())} rejected: {out}"
    )


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
    from kanime.data.review import apply_rejects, contact_sheets

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
    data: Annotated[
        str, typer.Argument(help="A dataset made by `kanime prepare`, or `procedural`.")
    ],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Output folder.")] = Path(
        "runs/tagger"
    ),
    size: Annotated[int, typer.Option(help="Image side the tagger works at.")] = 64,
    steps: Annotated[int, typer.Option(help="Training steps.")] = 1500,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    seed: Annotated[int, typer.Option(help="Seeds the split, the batches and the weights.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
):
    """Train the multi-label tagger on tagged faces; print per-tag precision and recall."""
    from kanime.data.tagger import fit_tagger as run

    try:
        evaluation = run(
            data, run_dir, image_size=size, steps=steps, batch_size=batch_size, seed=seed,
            progress=progress,
        )  # fmt: skip
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e), 2)
    typer.echo(f"{'tag':<14} precision  recall  support  (held out: {evaluation['held_out']})")
    for name, row in evaluation["per_tag"].items():
        p = "-" if row["precision"] is None else f"{row['precision']:.3f}"
        r = "-" if row["recall"] is None else f"{row['recall']:.3f}"
        typer.echo(f"{name:<14} {p:>9}  {r:>6}  {row['support']:>7}")
    typer.echo(f"Tagger: {run_dir / 'tagger.keras'}")


@app.command()
def version():
    """Print the versions of kanime, Keras and the backend."""
    import keras

    from kanime import __version__

    typer.echo(
        f"kanime {__version__}, keras {keras.__version__}, backend {keras.backend.backend()}"
    )


if __name__ == "__main__":
    app()
