"""Where outputs may go: names that are names, and outputs kept off and out of inputs.

Every command that writes (``stylize`` images and reports, training runs and
their exported styles, ``eval`` sheets, ``palette``) checks its outputs here
before any work, so no output can replace an input, land inside one, or hold
one (an output folder above the inputs would mix outputs with the originals).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

NAME_MAX = 255
"""Longest file name, in bytes, on the file systems siamgan writes to (ext4, APFS, NTFS)."""

_NAME = re.compile(r"\w[\w.+-]*")
NAME_RULE = ("letters, digits, '_', '-', '+' and '.', starting with a letter, digit or '_', "
             "at most 200 bytes")


class PathError(ValueError):
    """An output would land where it must not, or a name is not a name (usage error)."""


def check_name(name: str, what: str = "--name") -> str:
    """``name`` if it is a plain name (never a path: no ``/``, ``..``, ``~``), else raise."""
    if not (isinstance(name, str) and _NAME.fullmatch(name)
            and len(os.fsencode(name)) <= 200):
        raise PathError(f"{what} {name!r} is not a valid name: use {NAME_RULE}")
    return name


def expand_user(path: str | Path) -> Path:
    """``~`` and ``~user`` expanded where they can be; otherwise the path as written,
    as a shell leaves ``~nouser/x`` (so it names a file called ``~nouser``)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # an unknown user, or no home folder
        return Path(path)


def real(path: str | Path) -> Path:
    """The absolute path with every link resolved (parts that do not exist yet kept)."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(path))))


def is_within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or anywhere below it, links resolved."""
    return real(path).is_relative_to(real(folder))


def check_outside(output: str | Path, inputs: Iterable[str | Path], what: str,
                  inside_ok: bool = False) -> None:
    """Raise :class:`PathError` if ``output`` is an input, holds one, or lies inside one.

    ``inside_ok`` allows an output inside an input *folder*: only for outputs the
    command itself keeps out of its inputs (``stylize -o trip/styled``, never read back).
    """
    for item in inputs:
        if is_within(output, item):
            if real(output) == real(item):
                raise PathError(f"{what} {output} is the input {item}; choose another, "
                                "so the originals are never overwritten")
            if not inside_ok:
                raise PathError(f"{what} {output} is inside the input {item}; "
                                "choose a place outside the inputs")
        elif is_within(item, output):
            raise PathError(f"{what} {output} holds the input {item}: outputs would land "
                            "among the originals; choose a folder outside the inputs")


def overlap(a: str | Path, b: str | Path) -> bool:
    """Whether two folders are the same, or one lies inside the other."""
    return is_within(a, b) or is_within(b, a)


def name_max(folder: str | Path) -> int:
    """The longest file name ``folder`` takes, in bytes."""
    try:
        return min(NAME_MAX, os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def short_name(name: str, budget: int) -> str:
    """``name`` if it fits ``budget`` bytes, else its first bytes plus a hash of all of it.

    Hidden helper files beside an output (temp files, claims) add a few bytes to its
    name; this keeps them within the file system's limit, distinct per name and
    stable, so the same output always gets the same helper name.
    """
    raw = os.fsencode(name)
    if len(raw) <= budget:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return os.fsdecode(raw[: budget - len(digest) - 1]) + "~" + digest
