"""Device choice, seeding and atomic writes."""

import pytest
import torch

from companion.runtime import atomic_write, default_device, scale_name, seed_everything


def test_atomic_write_replaces_whole_files_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "result.json"
    atomic_write(target, lambda handle: handle.write(b"first"))
    assert target.read_bytes() == b"first"

    def failing(handle):
        handle.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"first"  # the old file survives a failed write
    assert [p.name for p in target.parent.iterdir()] == ["result.json"]  # no temporary left


def test_seed_everything_is_reproducible():
    first = torch.rand(3, generator=seed_everything(7)), torch.rand(3)
    second = torch.rand(3, generator=seed_everything(7)), torch.rand(3)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_device_switch(monkeypatch):
    monkeypatch.setenv("MAXRL_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    assert scale_name(torch.device("cpu")) == "cpu"
    assert scale_name(torch.device("cuda", 0)) == "gpu"


def test_default_device_without_the_variable(monkeypatch):
    monkeypatch.delenv("MAXRL_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")
    monkeypatch.setenv("MAXRL_DEVICE", "meta")  # the variable wins over CUDA
    assert default_device() == torch.device("meta")


def test_seed_everything_seeds_python_and_numpy_too():
    import random

    import numpy as np

    seed_everything(11)
    first = random.random(), np.random.rand()
    seed_everything(11)
    assert (random.random(), np.random.rand()) == first
    seed_everything(12)
    assert (random.random(), np.random.rand()) != first


def test_atomic_write_stages_a_hidden_temporary_beside_the_target(tmp_path):
    import os
    import stat

    target = tmp_path / "a" / "b" / "result.json"  # two missing folders
    seen = []

    def write(handle):
        seen.extend(os.listdir(target.parent))
        handle.write(b"data")

    assert atomic_write(target, write) == target
    assert target.read_bytes() == b"data"
    assert len(seen) == 1 and seen[0].startswith(".result.json.") and seen[0].endswith(".tmp")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
