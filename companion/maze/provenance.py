r"""Files of the maze experiment: JSON and checkpoints written atomically, read with errors that
name the file and say what to do, and the ``provenance`` block of committed results.

A checkpoint is read with ``torch.load(..., weights_only=True)``: only tensors and plain Python
containers are unpickled, so a crafted file in a run folder cannot run code on resume.

Derived in: chapter 9.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import re

import torch

from companion.provenance import device_name, git_state
from companion.runtime import atomic_write


class RunFileError(RuntimeError):
    """A file of a run folder or a results file cannot be read."""


# a JSON string (left alone) or a list with no string, list or object inside (put on one line)
_STRING_OR_FLAT_LIST = re.compile(r'("(?:[^"\\]|\\.)*")|(\[[^\[\]{}"]*\])')


def write_json(data: object, path: str | os.PathLike) -> pathlib.Path:
    """``data`` as indented JSON with lists of numbers on one line, through
    :func:`companion.runtime.atomic_write`."""
    text = json.dumps(data, indent=1, allow_nan=False)
    text = _STRING_OR_FLAT_LIST.sub(lambda m: m.group(1) or "".join(m.group(2).split()), text)
    return atomic_write(path, lambda handle: handle.write((text + "\n").encode()))


def read_json(path: str | os.PathLike, remedy: str) -> object | None:
    """The JSON in ``path``, or None when it does not exist. A file that is not valid JSON (a
    truncated or corrupted one) raises :class:`RunFileError` naming it, with ``remedy``."""
    path = pathlib.Path(path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunFileError(f"{path} is not valid JSON ({error}); {remedy}") from error


def save_checkpoint(state: dict, path: str | os.PathLike) -> pathlib.Path:
    """``torch.save(state)`` through :func:`companion.runtime.atomic_write`."""
    return atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device) -> dict:
    """Read a checkpoint with ``weights_only=True``; a truncated, corrupted or unsafe file (one
    that asks to unpickle anything but tensors and containers) raises :class:`RunFileError`."""
    path = pathlib.Path(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for a bad file
        raise RunFileError(
            f"{path} cannot be loaded as a plain tensor checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); delete it to redo that phase "
            "from the start, or use a new run folder"
        ) from error
    if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
        raise RunFileError(
            f"{path} is not a maze checkpoint (missing model/optimizer/step); delete it to "
            "redo that phase from the start, or use a new run folder"
        )
    return state


def provenance(config_dict: dict, command: str | None = None) -> dict:
    """The block committed with every result, taken when a command starts: the exact config,
    the git commit and whether the tracked files outside ``book/results`` were clean, the
    device, torch and Python versions, torch threads, the command and the start time (UTC).
    The command adds ``wall_seconds`` when it ends."""
    code = git_state("book/results")
    device = config_dict.get("device", "cpu")
    return {
        "config": config_dict,
        "git_commit": code["commit"],
        "git_clean": code["clean"],
        "device": device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "started_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
