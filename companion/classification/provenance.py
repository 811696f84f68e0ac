"""Where a result came from: the exact config, the code version, the machine, the time.

Every result file of the experiment carries :func:`provenance`'s block, so a number in the
book can be traced to the commit and the device that produced it.
"""

from __future__ import annotations

import datetime
import pathlib
import platform
import subprocess
import sys

import torch

#: The repository root (the folder that holds ``companion/``).
REPOSITORY = pathlib.Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=REPOSITORY, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def git_state() -> dict[str, object]:
    """``{"commit": sha or None, "clean": bool or None}`` of the repository holding this code.

    ``clean`` is True when no tracked file differs from the commit (untracked files, such as
    results being written, do not count); both are None outside a git checkout.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "clean": None if status is None else status == ""}


#: The repository's state when this module was imported, i.e. the code this process loaded:
#: a long sweep keeps running the code it started with even if files change meanwhile.
LOADED_CODE: dict[str, object] = git_state()


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


def provenance(
    config: dict, device: torch.device | str, started: float, wall_seconds: float
) -> dict[str, object]:
    """The provenance block of one result (code version: :data:`LOADED_CODE`).

    Parameters
    ----------
    config : dict
        The exact configuration (``ClassificationConfig.to_dict()``).
    device : torch.device or str
        The device that ran it.
    started : float
        Start time, seconds since the epoch (``time.time()``).
    wall_seconds : float
        Wall-clock duration.
    """
    start = datetime.datetime.fromtimestamp(started, tz=datetime.UTC)
    return {
        "config": config,
        **LOADED_CODE,
        "device": str(device),
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "started": start.isoformat(timespec="seconds"),
        "wall_seconds": round(float(wall_seconds), 3),
    }
