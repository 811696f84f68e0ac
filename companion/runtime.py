"""Device choice, seeding and the experiment scale switch shared by the toy experiments.

The book's rule: full scale on CUDA, a small CPU scale otherwise (each notebook about a minute
on 2 cores). :func:`default_device` decides; experiment configs expose ``for_device``.
"""

from __future__ import annotations

import os
import pathlib
import random
import tempfile
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import torch


def default_device() -> torch.device:
    """CUDA when available, else CPU. ``MAXRL_DEVICE=cpu`` forces the CPU."""
    requested = os.environ.get("MAXRL_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def scale_name(device: torch.device) -> str:
    """``"gpu"`` on CUDA, else ``"cpu"``: the experiment scale used on this device."""
    return "gpu" if torch.device(device).type == "cuda" else "cpu"


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> pathlib.Path:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place.

    ``os.replace`` is atomic, so a reader (or a run resumed after an interruption) sees either
    the previous file or the complete new one, never a half-written file. Creates the parent
    folder. Returns ``path``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0o600
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    return path
