"""Tests of the maze command line (python -m companion.maze)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from companion.maze.__main__ import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
SMALL = (
    "--d-model 16 --n-layers 1 --n-heads 2 --sft-steps 2 --rl-steps 2 --train-pool 32 "
    "--eval-mazes 4 --probe-mazes 4 --probe-samples 2 --prompts-per-step 2 --no-progress"
).split()
TINY = [
    "--scale",
    "cpu",
    *"--cells 3 --probe-every 1 --eval-samples 2 --num-samples 2".split(),
    *SMALL,
]


@pytest.mark.parametrize(
    "flags",
    [
        ["--grad-clip", "0"],
        ["--grad-clip", "nan"],
        ["--lr", "-1"],
        ["--lr", "inf"],
        ["--rl-steps", "-1"],
        ["--sft-batch", "0"],
        ["--num-samples", "1"],
        ["--cells", "12"],
        ["--cells", "three"],
        ["--eval-samples", "0"],
        ["--methods", "ppo"],
        ["--scale", "huge"],
        ["--seeds", "1", "1"],
        ["--threads", "0"],
        ["--samples", "8"],
        ["sweep", "--samples", "1", "4"],
        ["--show-maze", "1"],
        ["--cells", "2", "--eval-mazes", "49"],
        ["--eval-mazes", "14000"],  # more than the 13 824 problems of 3x3 cells: fails at once
        ["--n-heads", "3"],
        ["--no-such-flag"],
    ],
)
def test_bad_values_are_one_line_usage_errors_and_write_nothing(flags, tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stop:
        main([*flags, "--out", str(out)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err and "Traceback" not in err
    assert not out.exists()


def test_gpu_scale_without_cuda_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as stop:
        main(["--scale", "gpu", "--out", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_help_has_no_restructuredtext_markup():
    done = subprocess.run(
        [sys.executable, "-m", "companion.maze", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    text = done.stdout
    for flag in (
        "--cells",
        "--num-samples",
        "--rl-steps",
        "--sft-steps",
        "--lr",
        "--eval-mazes",
        "--eval-samples",
        "--scale",
        "sweep",
    ):
        assert flag in text
    assert "``" not in text and ":math:" not in text and ":func:" not in text


def test_run_sweep_and_fixed_write_results(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path / "a"), "--results", str(tmp_path / "a.json")]) == 0
    printed = capsys.readouterr().out
    assert "pass@1" in printed and "never solved" in printed
    results = json.loads((tmp_path / "a.json").read_text())
    assert results["complete"] and results["provenance"]["command"].startswith("python -m")
    assert (tmp_path / "a" / "results.json").exists()
    args = [*TINY, "--methods", "maxrl", "--out", str(tmp_path / "b")]
    assert main(["sweep", *args, "--samples", "2", "3"]) == 0
    sweep = json.loads((tmp_path / "b" / "results.json").read_text())
    assert sweep["experiment"] == "sweep" and set(sweep["runs"]["0"]) == {"sft", "N2", "N3"}
    assert (
        main(
            [
                "fixed",
                *TINY,
                "--methods",
                "grpo",
                "--eval-every",
                "1",
                "--rl-pool",
                "8",
                "--out",
                str(tmp_path / "c"),
            ]
        )
        == 0
    )
    fixed = json.loads((tmp_path / "c" / "results.json").read_text())
    assert fixed["experiment"] == "fixed"
    assert fixed["runs"]["0"]["grpo"]["train"]["held_out_correct"]["step"] == [1]


def test_a_folder_with_another_run_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--methods", "grpo", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*TINY, "--methods", "grpo", "--rl-steps", "3", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "another configuration" in err and err.count("\n") == 1


def test_corrupted_run_file_is_an_error_that_names_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--methods", "rloo", "--out", str(out)]) == 0
    (out / "seed0" / "rloo" / "eval.json").write_text("{")
    capsys.readouterr()
    assert main([*TINY, "--methods", "rloo", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "rloo/eval.json" in err and "delete it" in err and "Traceback" not in err


def test_the_gpu_command_runs_at_cpu_size_with_bf16_autocast(tmp_path):
    """The GPU preset's code path (4x4 cells, bf16 autocast) with every size overridden small."""
    small = ["--device", "cpu", "--eval-samples", "4", "--num-samples", "4", "--seeds", "0"]
    assert main(["--scale", "gpu", *small, *SMALL, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    config = results["config"]
    assert config["scale"] == "gpu" and config["cells"] == 4 and config["autocast"]
    for name in ("sft", "reinforce", "rloo", "grpo", "maxrl"):
        entry = results["runs"]["0"][name]
        assert all(math.isfinite(v) for v in entry["train"]["loss"])
        assert len(entry["eval"]["correct"]) == 4


@pytest.mark.parametrize(
    "flag", ["--lr", "--grad-clip", "--rl-steps", "--sft-batch", "--eval-samples", "--rl-pool"]
)
def test_a_bad_value_error_names_the_flag(flag, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([flag, "-1", "--out", str(tmp_path / "run")])
    assert f"{flag} must be" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--n-heads", "3"], ["--d-model", "--n-heads"]),
        (["--rl-pool", "6000"], ["--rl-pool", "--train-pool"]),
        (["--eval-mazes", "14000"], ["--eval-mazes", "--train-pool"]),
    ],
)
def test_errors_between_two_values_name_both_flags(flags, named, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([*flags, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert all(flag in err for flag in named) and "MazeConfig" not in err and "_" not in err
