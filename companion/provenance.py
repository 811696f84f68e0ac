"""Where a committed result came from: the code version and the machine.

The experiments (chapters 8, 9 and 10) store every result with a ``provenance`` block: the exact
config, the git commit and whether the tracked files were clean, the device's name, the library
versions, the start time and the wall time. This module holds the pieces they share; each
experiment assembles its own block from them.
"""

from __future__ import annotations

import pathlib
import platform
import subprocess

import torch

#: The repository root (the folder that holds ``companion/``).
REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def git(*args: str) -> str | None:
    """The output of ``git ARGS`` run in :data:`REPOSITORY`, or None when git fails (no git,
    not a checkout)."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(*exclude: str) -> dict[str, object]:
    """``{"commit": sha or None, "clean": bool or None}`` of the checkout holding this code.

    ``clean`` is True when no tracked file differs from the commit, ignoring the paths in
    ``exclude`` (e.g. ``"book/results"``, where results are being written); untracked files do
    not count. Both are None outside a git checkout.
    """
    commit = git("rev-parse", "HEAD")
    pathspec = ["--", ".", *(f":!{path}" for path in exclude)] if exclude else []
    status = git("status", "--porcelain", "--untracked-files=no", *pathspec)
    return {"commit": commit, "clean": None if status is None or commit is None else status == ""}


def device_name(device: torch.device | str) -> str:
    """A readable name: the GPU's model on CUDA, else the CPU's model (or the platform)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
