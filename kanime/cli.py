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
def version():
    """Print the versions of kanime, Keras and the backend."""
    import keras

    from kanime import __version__

    typer.echo(
        f"kanime {__version__}, keras {keras.__version__}, backend {keras.backend.backend()}"
    )


if __name__ == "__main__":
    app()
