"""Tests of the maze reports: pass@k from counts, spreads, paired bootstrap, efficiency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from companion.maze.report import (
    compare,
    compute_seconds,
    default_ks,
    efficiency_gain,
    format_table,
    held_out_over_training,
    never_solved,
    paired_bootstrap,
    pass_at_k_curves,
    per_seed_gains,
    probe_curve,
    summary_rows,
    sweep_table,
)


def synthetic(seeds: int = 5, mazes: int = 40, n: int = 8, sweep: bool = False) -> dict:
    """A results dict with random per-maze counts; MaxRL solves more mazes at least once."""
    rng = np.random.default_rng(0)
    methods = ["grpo", "maxrl"]
    rates = {"sft": 0.3, "grpo": 0.45, "maxrl": 0.4}
    spread = {"sft": 0.3, "grpo": 0.5, "maxrl": 0.2}
    runs = {}
    for seed in range(seeds):
        base = rng.uniform(size=mazes)

        def entry(name, _base=base):
            p = np.clip(rates[name] + spread[name] * (_base - 0.5) * 2, 0, 1)
            correct = rng.binomial(n, p).tolist()
            probe = {"step": [2, 4], "value": [rates[name], rates[name] + 0.01]}
            periodic = {"step": [2], "value": [rng.binomial(n, p).tolist()]}
            return {
                "train": {"probe_reward": probe, "held_out_correct": periodic},
                "eval": {"correct": correct, "probe_reward": 0.3},
            }

        runs[str(seed)] = {"sft": entry("sft")}
        for method in methods:
            if sweep:
                for ns in (4, 8):
                    runs[str(seed)].setdefault(f"N{ns}", {})[method] = entry(method)
            else:
                runs[str(seed)][method] = entry(method)
    config = {"methods": methods, "eval_samples": n, "rl_steps": 4}
    return {"config": config, "runs": runs, "num_samples": [4, 8] if sweep else [16]}


def test_curves_spreads_and_never_solved_against_loops():
    results = synthetic()
    n = 8
    for name in ("sft", "grpo", "maxrl"):
        curves = pass_at_k_curves(results, name)
        rows = [results["runs"][s][name]["eval"]["correct"] for s in results["runs"]]
        for seed, correct in enumerate(rows):
            for k in (1, 3, 8):
                loop = np.mean([1 - math.comb(n - c, k) / math.comb(n, k) for c in correct])
                assert curves[seed, k - 1] == pytest.approx(loop, abs=1e-12)
            assert never_solved(results, name)[seed] == np.mean([c == 0 for c in correct])
    table = {row["name"]: row for row in summary_rows(results, (1, 8))}
    values = pass_at_k_curves(results, "maxrl")[:, 0]
    mean, spread = table["maxrl"]["pass@1"]
    assert mean == pytest.approx(values.mean())
    assert spread == pytest.approx(
        np.sqrt(((values - values.mean()) ** 2).sum() / (len(values) - 1))
    )
    assert "never solved" in format_table(results) and default_ks(64) == (1, 2, 4, 8, 16, 32, 64)


def test_paired_bootstrap_is_centred_and_as_wide_as_normal_theory():
    rng = np.random.default_rng(1)
    second = rng.uniform(size=(5, 400))
    first = second + 0.05 + rng.normal(0, 0.2, size=(5, 400))
    result = paired_bootstrap(first, second, resamples=4000)
    diff_per_maze = (first - second).mean(0)
    assert result["diff"] == pytest.approx(diff_per_maze.mean())
    width = result["high"] - result["low"]
    normal = 2 * 1.96 * diff_per_maze.std(ddof=1) / np.sqrt(400)
    assert 0.85 * normal < width < 1.15 * normal
    assert result["low"] < diff_per_maze.mean() < result["high"] and result["excludes_zero"]
    same = paired_bootstrap(second, second, resamples=500)
    assert same["diff"] == same["low"] == same["high"] == 0 and not same["excludes_zero"]
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(first, second[:, :10])


def test_two_level_bootstrap_counts_the_spread_between_seeds():
    rng = np.random.default_rng(2)
    second = rng.uniform(size=(5, 300))
    offsets = np.array([0.2, -0.15, 0.1, -0.1, 0.0])[:, None]  # runs that disagree
    first = second + offsets + rng.normal(0, 0.05, size=(5, 300))
    mazes_only = paired_bootstrap(first, second, resamples=2000)
    both = paired_bootstrap(first, second, resamples=2000, over_seeds=True)
    assert (both["high"] - both["low"]) > 5 * (mazes_only["high"] - mazes_only["low"])
    assert not both["excludes_zero"]


def test_compare_uses_per_maze_pass_at_k_and_never_solved():
    results = synthetic()
    at_8 = compare(results, "maxrl", "grpo", 8, resamples=500)
    expected = pass_at_k_curves(results, "maxrl")[:, 7] - pass_at_k_curves(results, "grpo")[:, 7]
    assert at_8["diff"] == pytest.approx(expected.mean())
    never = compare(results, "maxrl", "grpo", 8, quantity="never", resamples=500)
    assert never["diff"] == pytest.approx(
        (never_solved(results, "maxrl") - never_solved(results, "grpo")).mean()
    )
    with pytest.raises(ValueError, match="quantity"):
        compare(results, "maxrl", "grpo", 1, quantity="mean")


def test_efficiency_gain():
    grpo = np.array([0.2, 0.3, 0.35, 0.4])
    maxrl = np.array([0.2, 0.4, 0.5, 0.6])
    assert efficiency_gain(grpo, maxrl) == (2, 2.0)
    assert efficiency_gain(maxrl, grpo) is None
    assert efficiency_gain(np.zeros(4), maxrl) is None  # nothing to reach
    assert efficiency_gain(grpo, grpo) == (4, 1.0)
    gains = per_seed_gains(synthetic())
    assert len(gains) == 5 and all(g is None or g[1] >= 1 for g in gains)


def test_curves_over_training_and_the_sweep_table():
    results = synthetic(seeds=2)
    steps, values = probe_curve(results, "maxrl")
    assert steps.tolist() == [0, 2, 4] and values.shape == (2, 3) and values[0, 0] == 0.3
    steps, values = held_out_over_training(results, "grpo", 1)
    assert steps.tolist() == [0, 2, 4] and values.shape == (2, 3)
    assert values[:, -1] == pytest.approx(pass_at_k_curves(results, "grpo")[:, 0])
    assert values[:, 0] == pytest.approx(pass_at_k_curves(results, "sft")[:, 0])
    sweep = synthetic(seeds=3, sweep=True)
    table = sweep_table(sweep, 2)
    assert table["maxrl"].shape == (2, 3) and table["sft"].shape == (3,)
    assert table["maxrl"][1] == pytest.approx(pass_at_k_curves(sweep, "maxrl", 8)[:, 1])


def test_compute_seconds_adds_every_phase_and_evaluation():
    results = synthetic(seeds=2, sweep=True)
    for runs in results["runs"].values():
        runs["sft"]["seconds"], runs["sft"]["eval"]["seconds"] = 10.0, 1.0
        for key in ("N4", "N8"):
            for entry in runs[key].values():
                entry["seconds"], entry["eval"]["seconds"] = 2.0, 0.5
    assert compute_seconds(results) == 2 * (11.0 + 2 * 2 * 2.5)
