r"""Reading a sweep back: tables over seeds, the N-sweep, the analytic share, paired bootstraps.

Every summary over seeds is a mean with the sample standard deviation (``ddof = 1``).

Derived in: chapter 8.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Iterable

import numpy as np

from companion.classification.config import METHODS, OPTIMIZERS, run_label
from companion.classification.sweep import SweepPlan, final_score
from companion.classification.train import RunResult, decode_floats
from companion.estimators import ADVANTAGES
from companion.exact import group_weight

Key = tuple[str, str, int]  # (optimizer, method, N)


def load_runs(folder: str | pathlib.Path, stage: str = "main") -> list[RunResult]:
    """Every run JSON under ``folder/stage``, sorted by file name."""
    paths = sorted((pathlib.Path(folder) / stage).rglob("*.json"))
    return [RunResult.from_dict(json.loads(path.read_text())) for path in paths]


def load_plan(folder: str | pathlib.Path) -> SweepPlan:
    """The :class:`SweepPlan` a sweep folder was made with."""
    return SweepPlan.from_dict(json.loads((pathlib.Path(folder) / "plan.json").read_text()))


def key_of(run: RunResult) -> Key:
    """``(optimizer, method, N)`` of a run."""
    c = run.config
    return c["optimizer"], c["method"], c["num_samples"]


def label_of(key: Key) -> str:
    """E.g. ``"MaxRL N=128"``."""
    return run_label(key[1], key[2])


def order(key: Key) -> tuple[str, int, int]:
    """Sort key of ``(optimizer, method, N)``: methods in :data:`METHODS` order, then N."""
    return key[0], METHODS.index(key[1]), key[2]


def group_runs(runs: Iterable[RunResult]) -> dict[Key, list[RunResult]]:
    """Runs grouped by ``(optimizer, method, N)``, each group sorted by seed."""
    groups: dict[Key, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(key_of(run), []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: (r.config["task_seed"], r.config["train_seed"]))
    return groups


def metric_at(run: RunResult, metric: str, step: int) -> float:
    """The validation ``metric`` recorded at ``step`` (``KeyError`` if not recorded)."""
    if step not in run.steps:
        raise KeyError(f"{run.config['method']}: no evaluation at step {step}")
    return run.metrics[metric][run.steps.index(step)]


def until(run: RunResult, step: int) -> RunResult:
    """A copy of ``run`` whose history stops at ``step`` (the per-example final values are
    dropped: they belong to the last step)."""
    keep = sum(s <= step for s in run.steps)
    return dataclasses.replace(
        run,
        steps=run.steps[:keep],
        metrics={name: values[:keep] for name, values in run.metrics.items()},
        train_pass_rate=run.train_pass_rate[:keep],
        all_fail_fraction=run.all_fail_fraction[:keep],
        final_log_pass_rate="",
    )


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof = 1``; NaN for one value)."""
    array = np.asarray(list(values), dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def final_table(
    runs: Iterable[RunResult], step: int, metrics: tuple[str, ...] = ("nll", "pass@1")
) -> list[dict[str, object]]:
    """One row per ``(optimizer, method, N)``: seeds, rate, mean and std of each metric at ``step``.

    Groups whose runs were not evaluated at ``step`` are left out.
    """
    rows = []
    for key, group in group_runs(runs).items():
        if any(step not in run.steps for run in group):
            continue
        row: dict[str, object] = {
            "optimizer": key[0],
            "run": label_of(key),
            "method": key[1],
            "N": key[2],
            "lr": group[0].config["learning_rate"],
            "seeds": len(group),
        }
        for metric in metrics:
            row[metric] = mean_std(metric_at(run, metric, step) for run in group)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, object]], metrics: tuple[str, ...]) -> str:
    """Plain-text table of :func:`final_table` rows (``mean ± std``)."""
    header = f"{'optimizer':9s} {'run':16s} {'lr':>6s} {'seeds':>5s}" + "".join(
        f" {m:>17s}" for m in metrics
    )
    lines = [header]
    for row in rows:
        cells = [f"{row['optimizer']:9s} {row['run']:16s} {row['lr']:6g} {row['seeds']:5d}"]
        for metric in metrics:
            mean, std = row[metric]
            cells.append(f" {mean:9.4f} ± {std:6.4f}")
        lines.append("".join(cells))
    return "\n".join(lines)


def sample_count_sweep(
    runs: Iterable[RunResult], optimizer: str, metric: str, step: int
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{method: (N values, means, stds)}`` of ``metric`` at ``step`` for one optimizer."""
    sweep: dict[str, list[tuple[int, float, float]]] = {}
    for (opt, method, n), group in sorted(group_runs(runs).items(), key=lambda kv: order(kv[0])):
        if opt == optimizer and all(step in run.steps for run in group):
            sweep.setdefault(method, []).append(
                (n, *mean_std(metric_at(run, metric, step) for run in group))
            )
    return {
        m: tuple(np.array(column) for column in zip(*rows, strict=True))
        for m, rows in sweep.items()
    }


def gradient_share(method: str, num_samples: int, pass_rate) -> np.ndarray:
    r"""The share :math:`s = p\,c_N(p)` of the maximum-likelihood gradient a method keeps.

    In classification every method's expected gradient is :math:`c_N(p)\,\nabla p =
    s(p)\,\nabla\log p`, and cross-entropy's is :math:`\nabla \log p` (:math:`s = 1`);
    :math:`c_N` comes from :func:`companion.exact.group_weight`.

    Shapes: pass_rate (M,) -> (M,) float64.

    Derived in: chapter 8 (the weights of chapters 3 and 6).
    """
    p = np.asarray(pass_rate, dtype=np.float64)
    if method == "cross_entropy":
        return np.ones_like(p)
    return p * group_weight(ADVANTAGES[method], p, num_samples)


def plateau_step(steps: list[int], values: list[float], tolerance: float) -> int:
    """The first evaluated step after which ``values`` (a loss) never improves by more than
    ``tolerance``: the smallest ``s`` with ``min(values after s) >= values[s] - tolerance``."""
    if len(steps) != len(values) or not steps:
        raise ValueError("plateau_step: steps and values must be non-empty and of equal length")
    for i, value in enumerate(values):
        if min(values[i:]) >= value - tolerance:
            return steps[i]
    raise AssertionError("unreachable: the last value always qualifies")


def per_example(run: RunResult, metric: str, step: int | None = None) -> np.ndarray:
    """Per-validation-example values of ``metric`` at ``step`` (default: the run's last step),
    from the stored ``log p`` (``KeyError`` if the run kept none at that step)."""
    if step is None or step == run.steps[-1]:
        log_p = decode_floats(run.final_log_pass_rate)
    elif str(step) in run.example_log_pass_rates:
        log_p = decode_floats(run.example_log_pass_rates[str(step)])
    else:
        raise KeyError(f"{label_of(key_of(run))}: no per-example values kept at step {step}")
    if metric == "nll":
        return -log_p
    if metric == "pass@1":
        return np.exp(log_p)
    k = int(metric.removeprefix("pass@"))
    return -np.expm1(k * np.log1p(-np.exp(log_p)))


def paired_bootstrap(
    runs_a: list[RunResult],
    runs_b: list[RunResult],
    metric: str,
    step: int | None = None,
    samples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``metric(a) - metric(b)`` at ``step`` and its 95% paired-bootstrap interval.

    Runs are paired by seed (same task, same validation examples); the examples of every seed
    are resampled with replacement and the statistic is the mean over seeds of the mean
    per-example difference. ``step=None``: each run's last step (which must agree).
    Returns ``(estimate, low, high)``.
    """
    pairs = {(r.config["task_seed"], r.config["train_seed"]): [r] for r in runs_a}
    for run in runs_b:
        pairs.get((run.config["task_seed"], run.config["train_seed"]), []).append(run)
    matched = [pair for pair in pairs.values() if len(pair) == 2]
    if step is None and any(a.steps[-1] != b.steps[-1] for a, b in matched):
        raise ValueError("paired_bootstrap: the runs end at different steps; give step=")
    differences = [per_example(a, metric, step) - per_example(b, metric, step) for a, b in matched]
    if len(differences) != len(runs_a) or len(differences) != len(runs_b):
        raise ValueError("paired_bootstrap: runs_a and runs_b must hold the same seeds")
    rng = np.random.default_rng(seed)
    estimate = float(np.mean([d.mean() for d in differences]))
    draws = np.zeros(samples)
    for d in differences:
        draws += d[rng.integers(0, d.size, (samples, d.size))].mean(1)
    low, high = np.quantile(draws / len(differences), [0.025, 0.975])
    return estimate, float(low), float(high)


def tuning_table(runs: Iterable[RunResult]) -> list[dict[str, object]]:
    """One row per ``(optimizer, method, rate)`` of the tuning stage: mean final NLL and pass@1
    over the tuning seeds (``inf`` / ``0`` for a run that diverged), and how many diverged."""
    groups: dict[tuple[str, str, float], list[RunResult]] = {}
    for run in runs:
        c = run.config
        groups.setdefault((c["optimizer"], c["method"], c["learning_rate"]), []).append(run)
    rows = []

    def rank(item):  # SGD first, methods in the book's order, then the rate
        (optimizer, method, lr), _ = item
        return OPTIMIZERS.index(optimizer), METHODS.index(method), lr

    for (optimizer, method, lr), group in sorted(groups.items(), key=rank):
        rows.append(
            {
                "optimizer": optimizer,
                "method": method,
                "lr": lr,
                "nll": float(np.mean([final_score(r, "nll") for r in group])),
                "pass@1": float(np.mean([-final_score(r, "pass@1") for r in group])),
                "diverged": sum(bool(r.error) for r in group),
            }
        )
    return rows
