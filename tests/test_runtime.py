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
