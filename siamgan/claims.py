"""Claim files: several ``stylize`` runs on one output folder share the work.

Before a run converts a file it creates ``.NAME.claim`` beside the output with
``O_CREAT | O_EXCL``, which only one process can do, holding ``PID@HOST``. Another
run that finds the claim leaves that file to its owner. A claim whose process no
longer runs on this machine is stale: it is ignored (removed and taken). A claim is
removed as soon as its file is written or given up.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .runs import alive, temp_stem

SUFFIX = ".claim"


def claim_path(output: Path) -> Path:
    """The claim file of ``output``: hidden, beside it, within the name limit."""
    return output.parent / f".{temp_stem(output.parent, output.name)}{SUFFIX}"


def owner() -> str:
    """What this process writes in its claims."""
    return f"{os.getpid()}@{socket.gethostname()}"


def _read(path: Path) -> str | None:
    try:  # never blocks, even on a FIFO planted under a claim's name
        with open(path, encoding="utf-8", errors="replace",
                  opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
            return f.read(200).strip()
    except OSError:
        return None


def is_stale(text: str) -> bool:
    """Whether a claim's ``PID@HOST`` names a process that no longer runs here.

    A claim of another machine cannot be checked, so it is never stale.
    """
    pid, _, host = text.partition("@")
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


def take(output: Path) -> str | None:
    """Claim ``output``: None once this process holds it, else who holds it.

    A folder where no claim can be made (read-only, full) is not a claim held by
    anyone: the caller goes on, and writing the output reports the real reason.
    """
    path = claim_path(output)
    for _ in range(3):
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            text = _read(path)
            if text is not None and not is_stale(text):
                return text or "another run"
            if text is not None:
                path.unlink(missing_ok=True)  # a killed run's claim
            continue
        except OSError:
            return None
        with os.fdopen(fd, "w") as f:
            f.write(owner())
        return None
    return "another run"


def release(output: Path) -> None:
    """Remove this process's claim on ``output`` (never another process's)."""
    path = claim_path(output)
    if _read(path) == owner():
        path.unlink(missing_ok=True)


def remove_stale(folder: Path, names: set[str]) -> list[Path]:
    """Delete the stale claims on ``names`` in ``folder``; the paths removed."""
    wanted = {claim_path(folder / name).name for name in names}
    try:
        found = [Path(e.path) for e in os.scandir(folder) if e.name in wanted]
    except OSError:
        return []
    removed = []
    for path in found:
        text = _read(path)
        if text is not None and is_stale(text):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
