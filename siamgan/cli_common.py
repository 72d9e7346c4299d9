"""Pieces shared by the `siamgan` and `siamgan dcgan` command lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from .images import DataError
from .runs import TrainingDiverged, exit_status
from .stylize import FULL_INSTALL, has_torch
from .weights_io import ExportError

DEVICE_HELP = "auto (CUDA if present, else CPU), cpu, cuda or cuda:N."


def fail(message: str, code: int = 1) -> None:
    """Print an error and exit: 2 for usage errors, 1 for failures."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def require_full(command: str) -> None:
    """Stop with one line saying what to install when torch (the full install) is absent."""
    if not has_torch():
        fail(f"`{command}` needs the full install (torch); install it with: {FULL_INSTALL}")


def run_training(train: Callable[[], Path], run_dir: Path, done: str) -> None:
    """Run a trainer with the CLI's exit codes: 2 bad data, name or folders; 1 diverged
    or export failed; 130 Ctrl-C, 143 SIGTERM (both after a checkpoint)."""
    from .distributed import is_main

    try:
        path = train()
    except (DataError, FileNotFoundError, ValueError) as e:
        fail(str(e), 2)
    except (TrainingDiverged, ExportError) as e:
        fail(str(e), 1)
    except KeyboardInterrupt as e:
        typer.echo(f"\ninterrupted: checkpoint saved in {run_dir}; continue with --resume",
                   err=True)
        raise typer.Exit(exit_status(e)) from None
    if is_main():  # under torchrun, one line, not one per process
        typer.echo(f"{done} {path}")
