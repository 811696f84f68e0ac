"""Tests of ``python -m companion.classification``: usage errors, run, sweep, report."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
import torch

from companion.classification.__main__ import main

UNUSABLE_DEVICE = ["--device", "tpu" if torch.cuda.is_available() else "cuda:0"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _usage_error(argv, capsys, out_folder=None):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in captured.err, lines
    if out_folder is not None:
        assert not out_folder.exists()  # nothing written
    return lines[0]


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--steps", "0"], "steps"),
        (["--steps", "ten"], "--steps"),
        (["--batch-size", "0"], "batch_size"),
        (["--lr", "nan"], "learning_rate"),
        (["--lr", "-0.1"], "learning_rate"),
        (["--lr", "inf"], "learning_rate"),
        (["--method", "ppo"], "method"),
        (["--method", "grpo", "--n", "1"], "num_samples"),
        (["--method", "cross_entropy", "--n", "4"], "num_samples"),
        (["--n", "0", "--method", "reinforce"], "num_samples"),
        (["--optimizer", "lion"], "optimizer"),
        (["--pass-at-k", "0"], "pass_at_ks"),
        (["--pass-at-k", "a,b"], "--pass-at-k"),
        (["--label-temperature", "0"], "label_temperature"),
        (["--num-classes", "1"], "num_classes"),
        (["--task-seed", "-3"], "task_seed"),
        (["--threads", "0"], "threads"),
        (UNUSABLE_DEVICE, "device"),
    ],
)  # fmt: skip
def test_run_turns_bad_values_into_one_line_usage_errors(flags, match, capsys, tmp_path):
    out = tmp_path / "out"
    line = _usage_error(["run", "--scale", "cpu", "--out", str(out), *flags], capsys, out)
    assert match in line


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--steps", "0"], "steps"),
        (["--seeds", "100"], "disjoint"),
        (["--n", "1"], "num_samples"),
        (["--methods", "maxrl,ppo"], "--methods"),
        (["--optimizers", "adam"], "no ['adam']"),
        (["--long-steps", "10"], "long_steps"),
        (["--selection-metric", "pass@16"], "--selection-metric"),
        (["--grid-extensions", "-1"], "grid_extensions"),
    ],
)
def test_sweep_turns_bad_values_into_one_line_usage_errors(flags, match, capsys, tmp_path):
    out = tmp_path / "out"
    line = _usage_error(["sweep", "--scale", "cpu", "--out", str(out), *flags], capsys, out)
    assert match in line


def test_output_folder_is_checked_before_training(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "not a folder" in _usage_error(["run", "--out", str(blocker)], capsys)
    line = _usage_error(["sweep", "--scale", "cpu", "--out", str(blocker / "x")], capsys)
    assert "not a writable folder" in line
    assert blocker.read_text() == ""


def test_a_folder_that_cannot_be_made_is_a_usage_error_before_training(
    capsys, tmp_path, monkeypatch
):
    from companion.classification import __main__ as cli

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the output folder was made")

    monkeypatch.setattr(pathlib.Path, "mkdir", refuse)
    monkeypatch.setattr(cli, "execute", no_training)
    monkeypatch.setattr(cli, "run_sweep", no_training)
    out = tmp_path / "out"
    assert "Permission denied" in _usage_error(["run", "--scale", "cpu", "--out", str(out)], capsys)
    line = _usage_error(["sweep", "--scale", "cpu", "--out", str(out)], capsys, out)
    assert "Permission denied" in line


def test_gpu_scale_needs_cuda(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "out"
    assert "CUDA" in _usage_error(["sweep", "--scale", "gpu", "--out", str(out)], capsys, out)


def test_report_of_a_folder_that_is_not_a_sweep(capsys, tmp_path):
    assert "not a sweep folder" in _usage_error(["report", str(tmp_path)], capsys)


def test_run_writes_one_json_with_provenance(capsys, tmp_path):
    argv = ["run", "--scale", "cpu", "--steps", "4", "--eval-every", "2", "--method", "maxrl"]
    argv += ["--n", "8", "--validation-size", "64", "--train-size", "300", "--out", str(tmp_path)]
    assert main(argv) == 0
    (path,) = tmp_path.rglob("*.json")
    data = json.loads(path.read_text())
    assert data["config"]["num_samples"] == 8 and data["steps"] == [0, 2, 4]
    assert data["provenance"]["config"] == data["config"]
    assert {"commit", "clean", "device_name", "torch_version", "started", "wall_seconds"} <= set(
        data["provenance"]
    )
    assert "MaxRL N=8" in capsys.readouterr().out


def test_sweep_dry_run_writes_nothing(capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["sweep", "--scale", "long", "--out", str(out), "--dry-run"]) == 0
    assert "60 tuning runs" in capsys.readouterr().out and not out.exists()


def test_sweep_passes_the_narrowed_plan_on(monkeypatch, tmp_path):
    from companion.classification import __main__ as cli

    seen = {}
    monkeypatch.setattr(
        cli, "run_sweep", lambda plan, out, device, progress: seen.update(plan=plan) or {}
    )
    argv = ["sweep", "--scale", "cpu", "--out", str(tmp_path), "--steps", "3", "--long-steps", "4"]
    argv += ["--methods", "cross_entropy,maxrl", "--seeds", "0,1", "--n", "2,4"]
    assert main(argv) == 0
    plan = seen["plan"]
    assert plan.base.steps == 3 and plan.long_steps == 4 and plan.seeds == (0, 1)
    assert plan.methods == ("cross_entropy", "maxrl") and plan.sample_counts == {"sgd": (2, 4)}
    assert plan.long_runs == (("sgd", "cross_entropy", 1),)  # MaxRL N=16 left the plan


def test_report_prints_the_tables_of_a_sweep(capsys, tmp_path):
    from test_classification_sweep import MICRO

    from companion.classification.sweep import run_sweep

    run_sweep(MICRO, tmp_path, echo=lambda line: None)
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tune sgd  maxrl" in out and "MaxRL N=4" in out and "± " in out
    assert "step 6 (" in out and "step 9 (" in out


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["run", "--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--method", "--n", "--optimizer", "--lr", "--steps", "--batch-size",
                 "--task-seed", "--train-seed", "--label-temperature", "--out"):  # fmt: skip
        assert flag in text


def test_a_real_usage_error_in_a_subprocess():
    completed = subprocess.run(
        [sys.executable, "-m", "companion.classification", "run", "--steps", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines() == [
        "python -m companion.classification: error: "
        "ClassificationConfig.steps must be an int >= 1, got 0"
    ]
