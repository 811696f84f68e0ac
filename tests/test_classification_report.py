"""Tests of companion.classification.report: summaries over seeds, shares, bootstraps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from companion.classification import report
from companion.classification.config import SMALL
from companion.classification.sweep import write_json
from companion.classification.train import RunResult, encode_floats
from companion.objectives import weight


def make_run(
    method="maxrl", n=4, seed=0, optimizer="sgd", lr=1.0, nll=(7.0, 3.0), log_p=None, error=""
):
    config = dataclasses.replace(
        SMALL, method=method, num_samples=1 if method == "cross_entropy" else n,
        optimizer=optimizer, learning_rate=lr, task_seed=seed, train_seed=seed,
    )  # fmt: skip
    steps = [0, 100, 200][: len(nll)]
    metrics = {"nll": list(nll), "pass@1": [math.exp(-v) for v in nll]}
    encoded = encode_floats(torch.tensor(log_p if log_p is not None else [-1.0, -2.0]))
    return RunResult(config=config.to_dict(), steps=steps, metrics=metrics,
                     final_log_pass_rate=encoded, error=error)  # fmt: skip


def test_load_and_group_runs(tmp_path):
    runs = [make_run(seed=1), make_run(seed=0), make_run("cross_entropy", seed=0)]
    for i, run in enumerate(runs):
        write_json(tmp_path / "main" / "sgd" / f"{i}.json", run.to_dict())
    loaded = report.load_runs(tmp_path)
    assert loaded == runs
    groups = report.group_runs(loaded)
    assert list(groups) == [("sgd", "maxrl", 4), ("sgd", "cross_entropy", 1)]
    assert [r.config["task_seed"] for r in groups[("sgd", "maxrl", 4)]] == [0, 1]
    assert report.label_of(("sgd", "maxrl", 4)) == "MaxRL N=4"


def test_mean_std_uses_ddof_one_and_the_table_reports_it():
    assert report.mean_std([1.0, 2.0, 4.0]) == pytest.approx(
        (7 / 3, float(np.std([1, 2, 4], ddof=1)))
    )
    assert math.isnan(report.mean_std([1.0])[1])
    runs = [make_run(seed=s, nll=(7.0, 3.0 + s)) for s in range(3)]
    runs.append(make_run("reinforce", seed=0, nll=(7.0, 6.0, 5.0)))
    (row,) = report.final_table(runs, 200)  # MaxRL has no step 200
    assert row["run"] == "REINFORCE N=4" and row["seeds"] == 1
    (row,) = [r for r in report.final_table(runs, 100) if r["method"] == "maxrl"]
    assert row["nll"] == pytest.approx((4.0, 1.0)) and row["seeds"] == 3 and row["lr"] == 1.0
    text = report.format_table([row], ("nll",))
    assert "MaxRL N=4" in text and "4.0000 ± 1.0000" in text
    with pytest.raises(KeyError, match="step 300"):
        report.metric_at(runs[0], "nll", 300)


def test_sample_count_sweep_collects_every_n():
    runs = [make_run(n=n, seed=s, nll=(7.0, 4.0 - n / 8 + s)) for n in (2, 8, 4) for s in (0, 1)]
    runs += [make_run(optimizer="adam", n=2, seed=0)]
    ns, means, stds = report.sample_count_sweep(runs, "sgd", "nll", 100)["maxrl"]
    assert ns.tolist() == [2, 4, 8]
    assert means.tolist() == pytest.approx([4.25, 4.0, 3.5]) and stds == pytest.approx(
        [0.5**0.5] * 3
    )


def _grpo_share_loop(p: float, n: int, eps: float = 1e-6) -> float:
    total = 0.0
    for j in range(n):
        pmf = math.comb(n - 1, j) * p**j * (1 - p) ** (n - 1 - j)
        advantages = []
        for first in (1.0, 0.0):
            rewards = [first] + [1.0] * j + [0.0] * (n - 1 - j)
            mean = sum(rewards) / n
            std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / (n - 1))
            advantages.append((first - mean) / (std + eps))
        total += pmf * (advantages[0] - advantages[1])
    return p * total


@pytest.mark.parametrize("n", [2, 16, 1024])
def test_gradient_share_matches_the_closed_forms(n):
    p = np.array([1e-3, 0.01, 0.3, 0.9])
    assert report.gradient_share("cross_entropy", 1, p).tolist() == [1.0] * 4
    for method in ("reinforce", "rloo"):
        assert report.gradient_share(method, n, p) == pytest.approx(p, rel=1e-9)
    maxrl = report.gradient_share("maxrl", n, p)
    assert maxrl == pytest.approx(1 - (1 - p) ** (n - 1), rel=1e-9)
    assert maxrl == pytest.approx(p * weight("maxrl", p, n - 1), rel=1e-9)
    if n <= 16:
        grpo = report.gradient_share("grpo", n, p)
        assert grpo == pytest.approx([_grpo_share_loop(float(q), n) for q in p], rel=1e-9)


def test_plateau_step():
    steps = [0, 100, 200, 300, 400, 500]
    losses = [7.0, 3.0, 2.0, 1.95, 1.97, 1.94]
    assert report.plateau_step(steps, losses, 0.02) == 300
    assert report.plateau_step(steps, losses, 0.005) == 500
    assert report.plateau_step(steps, losses, 1.5) == 100
    with pytest.raises(ValueError):
        report.plateau_step([], [], 0.1)


def test_per_example_metrics_from_log_pass_rates():
    run = make_run(log_p=[math.log(0.5), math.log(1e-3)])
    assert report.per_example(run, "nll") == pytest.approx([math.log(2), -math.log(1e-3)], rel=1e-6)
    assert report.per_example(run, "pass@1") == pytest.approx([0.5, 1e-3], rel=1e-6)
    expected = [1 - 0.5**16, 1 - (1 - 1e-3) ** 16]
    assert report.per_example(run, "pass@16") == pytest.approx(expected, rel=1e-6)


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    base = [rng.uniform(-5, -0.1, 400) for _ in range(3)]
    runs_b = [make_run(seed=s, log_p=base[s]) for s in range(3)]
    same = report.paired_bootstrap(runs_b, runs_b, "nll")
    assert same == (0.0, 0.0, 0.0)
    runs_a = [make_run(seed=s, log_p=base[s] - 0.25) for s in range(3)]  # NLL higher by 0.25
    estimate, low, high = report.paired_bootstrap(runs_a, runs_b, "nll")
    assert estimate == pytest.approx(0.25, abs=1e-5) and low == pytest.approx(0.25, abs=1e-5)
    noisy = [
        make_run(seed=s, log_p=base[s] - rng.normal(0.1, 1.0, 400).clip(0, None)) for s in range(3)
    ]
    estimate, low, high = report.paired_bootstrap(noisy, runs_b, "nll", samples=4000)
    loop = np.mean([(report.per_example(a, "nll") - report.per_example(b, "nll")).mean()
                    for a, b in zip(noisy, runs_b, strict=True)])  # fmt: skip
    assert estimate == pytest.approx(loop) and low < estimate < high and high - low < 0.2
    with pytest.raises(ValueError, match="same seeds"):
        report.paired_bootstrap(runs_a[:2], runs_b, "nll")


def test_tuning_table_counts_divergence_as_worst():
    runs = [make_run(lr=1.0, seed=0, nll=(7.0, 3.0)), make_run(lr=1.0, seed=1, nll=(7.0, 5.0)),
            make_run(lr=10.0, seed=0, error="NaN"), make_run(lr=10.0, seed=1)]  # fmt: skip
    rows = report.tuning_table(runs)
    assert [(r["lr"], r["nll"], r["diverged"]) for r in rows] == [
        (1.0, 4.0, 0),
        (10.0, math.inf, 1),
    ]
    assert rows[0]["pass@1"] == pytest.approx((math.exp(-3) + math.exp(-5)) / 2)


def test_until_cuts_the_history():
    run = make_run(nll=(7.0, 3.0, 2.0))
    run.train_pass_rate, run.all_fail_fraction = [None, 0.1, 0.2], [None, 0.9, 0.8]
    short = report.until(run, 150)
    assert short.steps == [0, 100] and short.metrics["nll"] == [7.0, 3.0]
    assert short.all_fail_fraction == [None, 0.9] and short.final_log_pass_rate == ""
    assert run.steps == [0, 100, 200]  # the original is unchanged


def test_bootstrap_at_an_intermediate_step_uses_the_kept_values():
    long_runs = [make_run(seed=s, nll=(7.0, 3.0, 2.0), log_p=[-5.0, -5.0]) for s in (0, 1)]
    for run in long_runs:
        run.example_log_pass_rates = {"100": encode_floats(torch.tensor([-1.0, -3.0]))}
    short_runs = [make_run(seed=s, nll=(7.0, 3.0), log_p=[-2.0, -2.0]) for s in (0, 1)]
    with pytest.raises(ValueError, match="different steps"):
        report.paired_bootstrap(long_runs, short_runs, "nll")
    assert report.paired_bootstrap(long_runs, short_runs, "nll", step=100)[0] == pytest.approx(0.0)
    assert report.per_example(long_runs[0], "nll") == pytest.approx([5.0, 5.0])
    with pytest.raises(KeyError, match="step 150"):
        report.per_example(long_runs[0], "nll", 150)
