"""Where a result came from: the exact config, the code version, the machine, the time.

Every result file of the experiment carries :func:`provenance`'s block, so a number in the
book can be traced to the commit and the device that produced it.
"""

from __future__ import annotations

import datetime
import sys

import torch

from companion.provenance import REPOSITORY, device_name, git_state

__all__ = ["LOADED_CODE", "REPOSITORY", "device_name", "git_state", "provenance"]

#: The repository's state when this module was imported, i.e. the code this process loaded:
#: a long sweep keeps running the code it started with even if files change meanwhile.
LOADED_CODE: dict[str, object] = git_state()


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
