r"""Summaries of maze results: pass@k per maze, the Table-3-shaped table with spreads over seeds,
paired bootstrap intervals over held-out mazes, test-time scaling efficiency, the N-sweep.

Every function reads the dict returned by :func:`companion.maze.experiment.run_experiment`
(or the committed JSON) and recomputes pass@k from the stored per-maze counts with the
unbiased estimator of chapter 7, so nothing here depends on how a run was stored.

Derived in: chapter 9.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from companion.passk import estimate_pass_at_k


def model_names(results: dict) -> list[str]:
    """``"sft"`` then the methods, in the config's order."""
    return ["sft", *results["config"]["methods"]]


def _entry(results: dict, seed: str, name: str, num_samples: int | None) -> dict:
    runs = results["runs"][seed]
    if name == "sft" or num_samples is None:
        return runs[name]
    return runs[f"N{num_samples}"][name]


def counts(results: dict, name: str, num_samples: int | None = None) -> np.ndarray:
    """Correct answers per held-out maze, ``(S, M)`` (one row per seed), of model ``name``
    (``num_samples``: the N of a sweep)."""
    return np.array(
        [_entry(results, s, name, num_samples)["eval"]["correct"] for s in results["runs"]]
    )


def eval_samples(results: dict) -> int:
    """``n``, answers sampled per held-out maze."""
    return int(results["config"]["eval_samples"])


def per_maze_pass_at_k(correct: np.ndarray, n: int, k: int) -> np.ndarray:
    """Unbiased pass@k of every maze, same shape as ``correct``."""
    return np.asarray(estimate_pass_at_k(n, np.asarray(correct), k), dtype=float)


def pass_at_k_curves(results: dict, name: str, num_samples: int | None = None) -> np.ndarray:
    """pass@k for k = 1..n averaged over held-out mazes, ``(S, n)``: one row per seed."""
    correct, n = counts(results, name, num_samples), eval_samples(results)
    return np.stack([per_maze_pass_at_k(correct, n, k).mean(1) for k in range(1, n + 1)], 1)


def never_solved(results: dict, name: str, num_samples: int | None = None) -> np.ndarray:
    """Share of held-out mazes with no correct answer among the n, per seed ``(S,)``."""
    return (counts(results, name, num_samples) == 0).mean(1)


def default_ks(n: int) -> tuple[int, ...]:
    """1, then powers of 2 up to n, and n."""
    ks = [1]
    while ks[-1] * 2 <= n:
        ks.append(ks[-1] * 2)
    return tuple(sorted({*ks, n}))


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for one value)."""
    values = np.asarray(values, dtype=float)
    spread = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return float(values.mean()), spread


def summary_rows(results: dict, ks: Sequence[int] | None = None) -> list[dict]:
    """One row per model: ``pass@k`` (mean, spread over seeds) for each k, and ``never``
    (mean, spread) the share of never-solved held-out mazes."""
    ks = ks or default_ks(eval_samples(results))
    rows = []
    for name in model_names(results):
        curves = pass_at_k_curves(results, name)
        row: dict = {"name": name}
        for k in ks:
            row[f"pass@{k}"] = mean_and_spread(curves[:, k - 1])
        row["never"] = mean_and_spread(never_solved(results, name))
        rows.append(row)
    return rows


def paired_bootstrap(
    first: np.ndarray,
    second: np.ndarray,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    over_seeds: bool = False,
    level: float = 0.95,
) -> dict:
    r"""Paired bootstrap interval of :math:`\bar d`, the mean over seeds and mazes of
    ``first - second`` (both ``(S, M)``: seeds x held-out mazes, the same mazes in both).

    Resamples the M mazes with replacement (each resample keeps a maze's pair together); with
    ``over_seeds`` the S seeds are resampled too (a two-level bootstrap that also counts the
    spread between training runs). Returns ``{"diff", "low", "high", "excludes_zero"}`` with
    the percentile interval at ``level``.
    """
    first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if first.shape != second.shape or first.ndim != 2:
        raise ValueError(
            f"paired_bootstrap: expected two arrays of the same shape (S, M), got "
            f"{first.shape} and {second.shape}"
        )
    diff = first - second  # (S, M)
    seeds, mazes = diff.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // (seeds * mazes))
    for begin in range(0, resamples, chunk):
        size = min(chunk, resamples - begin)
        maze_rows = rng.integers(mazes, size=(size, mazes))
        if over_seeds:
            seed_rows = rng.integers(seeds, size=(size, seeds))
            picked = diff[seed_rows[:, :, None], maze_rows[:, None, :]]  # (size, S, M)
            means[begin : begin + size] = picked.mean(axis=(1, 2))
        else:
            means[begin : begin + size] = diff.mean(0)[maze_rows].mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return {
        "diff": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "excludes_zero": bool(low > 0 or high < 0),
    }


def compare(
    results: dict,
    first: str,
    second: str,
    k: int,
    *,
    num_samples: int | None = None,
    quantity: str = "pass",
    **bootstrap,
) -> dict:
    """Paired bootstrap of model ``first`` minus model ``second`` on the held-out mazes, for
    ``quantity`` ``"pass"`` (per-maze pass@k) or ``"never"`` (maze never solved: 1 or 0)."""
    n = eval_samples(results)
    values = []
    for name in (first, second):
        correct = counts(results, name, num_samples)
        if quantity == "pass":
            values.append(per_maze_pass_at_k(correct, n, k))
        elif quantity == "never":
            values.append((correct == 0).astype(float))
        else:
            raise ValueError(f"compare: quantity must be 'pass' or 'never', got {quantity!r}")
    return paired_bootstrap(values[0], values[1], **bootstrap)


def efficiency_gain(baseline_curve: np.ndarray, curve: np.ndarray) -> tuple[int, float] | None:
    r"""Test-time scaling efficiency: with :math:`v` the baseline's pass@k at the largest k,
    the smallest :math:`k^*` with ``curve[k* - 1] >= v``; returns ``(k*, k_max / k*)``, or
    None when ``curve`` never reaches ``v`` or when ``v = 0`` (nothing to reach). Curves are
    indexed by k - 1."""
    baseline_curve, curve = np.asarray(baseline_curve), np.asarray(curve)
    if baseline_curve[-1] <= 0:
        return None
    reached = np.nonzero(curve >= baseline_curve[-1])[0]
    if reached.size == 0:
        return None
    k_star = int(reached[0]) + 1
    return k_star, len(baseline_curve) / k_star


def per_seed_gains(results: dict, baseline: str = "grpo", method: str = "maxrl") -> list:
    """:func:`efficiency_gain` of ``method`` over ``baseline`` on each seed."""
    base, other = pass_at_k_curves(results, baseline), pass_at_k_curves(results, method)
    return [efficiency_gain(b, o) for b, o in zip(base, other, strict=True)]


def sweep_table(results: dict, k: int) -> dict[str, np.ndarray]:
    """For a sweep: ``{method: (len(N), S) pass@k}`` over the swept N, and ``"sft"`` ``(S,)``."""
    n = eval_samples(results)
    table = {"sft": per_maze_pass_at_k(counts(results, "sft"), n, k).mean(1)}
    for method in results["config"]["methods"]:
        table[method] = np.array(
            [
                per_maze_pass_at_k(counts(results, method, ns), n, k).mean(1)
                for ns in results["num_samples"]
            ]
        )
    return table


def held_out_over_training(results: dict, name: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``(T,)`` (0 = after SFT) and held-out pass@k ``(S, T)`` over training, from the
    periodic evaluations of a run with ``eval_every`` and the final one."""
    n, rows, steps = eval_samples(results), [], None
    for runs in results["runs"].values():
        periodic = runs[name]["train"].get("held_out_correct", {"step": [], "value": []})
        seed_steps = [0, *periodic["step"], results["config"]["rl_steps"]]
        seed_counts = [
            runs["sft"]["eval"]["correct"],
            *periodic["value"],
            runs[name]["eval"]["correct"],
        ]
        rows.append([per_maze_pass_at_k(np.array(c), n, k).mean() for c in seed_counts])
        steps = np.array(seed_steps)
    return steps, np.array(rows)


def probe_curve(results: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``(T,)`` (0 = after SFT) and mean probe reward ``(S, T)`` of method ``name``."""
    rows, steps = [], None
    for runs in results["runs"].values():
        probe = runs[name]["train"]["probe_reward"]
        steps = np.array([0, *probe["step"]])
        rows.append([runs["sft"]["eval"]["probe_reward"], *probe["value"]])
    return steps, np.array(rows)


def format_table(results: dict, ks: Sequence[int] | None = None) -> str:
    """The Table-3-shaped text table: mean ± spread (ddof = 1) over seeds."""
    ks = ks or default_ks(eval_samples(results))
    header = f"{'':<10}" + "".join(f"{f'pass@{k}':>16}" for k in ks) + f"{'never solved':>16}"
    lines = [header]
    for row in summary_rows(results, ks):
        cells = [row[f"pass@{k}"] for k in ks] + [row["never"]]
        lines.append(f"{row['name']:<10}" + "".join(f"{m:>9.3f} ± {s:.3f}" for m, s in cells))
    return "\n".join(lines)


def compute_seconds(results: dict) -> float:
    """Seconds spent training and evaluating, summed over every run of ``results`` (across
    all sessions of a resumed command, unlike the provenance's wall time of the last one)."""
    total = 0.0

    def add(entry: dict) -> None:
        nonlocal total
        if "eval" in entry:
            total += entry.get("seconds", 0.0) + entry["eval"].get("seconds", 0.0)
        else:  # {method: entry} of one N in a sweep
            for inner in entry.values():
                add(inner)

    for runs in results["runs"].values():
        for entry in runs.values():
            add(entry)
    return total
