r"""The sweep: learning rates tuned per method, then every method and N over several seeds.

Two stages, each run written to its own JSON file as soon as it finishes (so an interrupted
sweep loses at most the run in progress, and a rerun skips every file that exists)::

    out/plan.json                                 the plan (checked on resume)
    out/tune/{optimizer}/{method}-N{N}-lr{lr}-task{t}-train{s}.json
    out/learning_rates.json                       the rates chosen from tune/
    out/main/{optimizer}/{method}-N{N}-lr{lr}-task{t}-train{s}.json

**Tuning.** For each optimizer, each method trains at ``N = tune_num_samples`` with every
learning rate of the optimizer's grid, on the tuning seeds (disjoint from the comparison
seeds, so the choice never sees the data it is judged on). The chosen rate minimises the mean
final validation ``selection_metric`` (NLL by default; a diverged run counts as infinitely bad);
when it lies on an edge of its grid, the grid gets one more rate past that edge and the choice
is made again (at most ``grid_extensions`` times), so a chosen rate is inside its grid.

**Comparison.** Each method at its chosen rate, for every N of the optimizer's list and every
seed (``task_seed = train_seed = seed``); the runs named in ``long_runs`` train for
``long_steps`` instead of ``base.steps`` (training never depends on the number of steps, so
their history up to ``base.steps`` is that of the shorter run). Derived in: chapter 8.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from companion.classification.config import (
    MIN_SAMPLES,
    OPTIMIZERS,
    REGIME,
    SMALL,
    ClassificationConfig,
)
from companion.classification.provenance import provenance
from companion.classification.task import ClassificationTask, make_task
from companion.classification.train import NonFiniteTrainingError, RunResult, train
from companion.runtime import atomic_write

SELECTION_METRICS: tuple[str, ...] = ("nll", "pass@1")
FULL_SAMPLE_COUNTS: tuple[int, ...] = tuple(2**k for k in range(1, 11))  # 2, 4, ..., 1024


@dataclass(frozen=True)
class SweepPlan:
    """Which runs a sweep makes (see the module docstring); validated when built."""

    base: ClassificationConfig = REGIME
    methods: tuple[str, ...] = ("cross_entropy", "reinforce", "rloo", "grpo", "maxrl")
    learning_rates: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"sgd": (1.0, 10.0, 100.0), "adam": (0.001, 0.01, 0.1)}
    )
    tune_num_samples: int = 1024
    tune_seeds: tuple[int, ...] = (100, 101)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    sample_counts: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"sgd": FULL_SAMPLE_COUNTS, "adam": (16, 128, 1024)}
    )
    long_steps: int = 6000
    long_runs: tuple[tuple[str, str, int], ...] = (
        ("sgd", "cross_entropy", 1),
        ("sgd", "maxrl", 4),
        ("sgd", "maxrl", 16),
        ("sgd", "maxrl", 128),
        ("sgd", "maxrl", 1024),
    )
    selection_metric: str = "nll"
    grid_extensions: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.base, ClassificationConfig):
            raise TypeError(f"SweepPlan.base must be a ClassificationConfig, got {self.base!r}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(
                f"SweepPlan.methods must be distinct and non-empty, got {self.methods}"
            )
        if not self.learning_rates or set(self.learning_rates) - set(OPTIMIZERS):
            raise ValueError(
                f"SweepPlan.learning_rates must map optimizers {OPTIMIZERS} to grids, "
                f"got {self.learning_rates}"
            )
        if set(self.sample_counts) != set(self.learning_rates):
            raise ValueError(
                "SweepPlan.sample_counts must name the same optimizers as learning_rates"
            )
        if self.selection_metric not in SELECTION_METRICS:
            raise ValueError(
                f"SweepPlan.selection_metric must be one of {SELECTION_METRICS}, "
                f"got {self.selection_metric!r}"
            )
        if set(self.tune_seeds) & set(self.seeds) or not self.tune_seeds or not self.seeds:
            raise ValueError(
                "SweepPlan: tune_seeds and seeds must be non-empty and disjoint (the learning "
                "rate is never chosen on the comparison seeds), got "
                f"{self.tune_seeds} and {self.seeds}"
            )
        if (
            isinstance(self.grid_extensions, bool)
            or not isinstance(self.grid_extensions, int)
            or (self.grid_extensions < 0)
        ):
            raise ValueError(
                f"SweepPlan.grid_extensions must be an int >= 0, got {self.grid_extensions!r}"
            )
        if not isinstance(self.long_steps, int) or self.long_steps < self.base.steps:
            raise ValueError(
                f"SweepPlan.long_steps must be an int >= base.steps = {self.base.steps}, "
                f"got {self.long_steps!r}"
            )
        # Building every config validates every value (rates, seeds, N >= the method's minimum).
        tune_configs(self)
        main_configs(self, {o: dict.fromkeys(self.methods, 1.0) for o in self.learning_rates})
        planned = {(o, m, n) for o, m, n, _ in _comparison_grid(self)}
        for run in self.long_runs:
            if tuple(run) not in planned:
                raise ValueError(
                    f"SweepPlan.long_runs: {run} is not a planned (optimizer, method, N)"
                )

    def to_dict(self) -> dict:
        """Plain dict for JSON."""
        values = dataclasses.asdict(self)
        values["base"] = self.base.to_dict()
        return json.loads(json.dumps(values))

    @classmethod
    def from_dict(cls, values: dict) -> SweepPlan:
        """Inverse of :meth:`to_dict`."""
        values = dict(values)
        values["base"] = ClassificationConfig.from_dict(values["base"])
        for name in ("learning_rates", "sample_counts"):
            values[name] = {key: tuple(grid) for key, grid in values[name].items()}
        for name in ("methods", "tune_seeds", "seeds"):
            values[name] = tuple(values[name])
        values["long_runs"] = tuple(tuple(run) for run in values["long_runs"])
        return cls(**values)


def plan_for_scale(scale: str) -> SweepPlan:
    """The named plans: ``cpu`` (minutes, a smoke test), ``long`` (the committed CPU results),
    ``gpu`` (the full sweep: ten seeds, both optimizers over every N, longer long runs)."""
    if scale == "long":
        return SweepPlan()
    if scale == "gpu":
        long_runs = tuple(
            (o, m, n)
            for o in ("sgd", "adam")
            for m, n in [("cross_entropy", 1)] + [("maxrl", n) for n in (4, 16, 128, 1024)]
        )
        return SweepPlan(
            base=dataclasses.replace(REGIME, scale="gpu"),
            seeds=tuple(range(10)),
            sample_counts={"sgd": FULL_SAMPLE_COUNTS, "adam": FULL_SAMPLE_COUNTS},
            long_steps=20_000,
            long_runs=long_runs,
        )
    if scale == "cpu":
        return SweepPlan(
            base=SMALL,
            learning_rates={"sgd": (1.0, 10.0, 100.0)},
            tune_num_samples=16,
            tune_seeds=(100,),
            seeds=(0, 1),
            sample_counts={"sgd": (2, 16)},
            long_steps=400,
            long_runs=(("sgd", "cross_entropy", 1), ("sgd", "maxrl", 16)),
        )
    raise ValueError(f"plan_for_scale: scale must be 'cpu', 'long' or 'gpu', got {scale!r}")


def _config(plan: SweepPlan, optimizer: str, method: str, n: int, lr: float, seed: int, steps: int):
    return dataclasses.replace(
        plan.base,
        method=method,
        num_samples=1 if method == "cross_entropy" else n,
        optimizer=optimizer,
        learning_rate=lr,
        task_seed=seed,
        train_seed=seed,
        steps=steps,
    )


Grids = dict[str, dict[str, tuple[float, ...]]]  # optimizer -> method -> learning rates


def initial_grids(plan: SweepPlan) -> Grids:
    """Every method starts from its optimizer's grid."""
    return {o: dict.fromkeys(plan.methods, tuple(g)) for o, g in plan.learning_rates.items()}


def tune_configs(plan: SweepPlan, grids: Grids | None = None) -> list[ClassificationConfig]:
    """The tuning runs: every optimizer x method x learning rate of its grid x tuning seed."""
    grids = grids if grids is not None else initial_grids(plan)
    n = max(plan.tune_num_samples, *(MIN_SAMPLES[m] for m in plan.methods))
    return [
        _config(plan, optimizer, method, n, lr, seed, plan.base.steps)
        for optimizer, by_method in grids.items()
        for method in plan.methods
        for lr in by_method[method]
        for seed in plan.tune_seeds
    ]


def extend_grids(grids: Grids, chosen: dict[str, dict[str, float]]) -> Grids | None:
    """Grids with one more rate past every edge that holds the chosen rate (the same ratio
    as the grid's first step), or None when every chosen rate is inside its grid."""
    extended, changed = {}, False
    for optimizer, by_method in grids.items():
        extended[optimizer] = {}
        for method, grid in by_method.items():
            grid = tuple(sorted(grid))
            ratio = grid[1] / grid[0] if len(grid) > 1 else 10.0
            if chosen[optimizer][method] == grid[0]:
                grid, changed = (grid[0] / ratio, *grid), True
            elif chosen[optimizer][method] == grid[-1]:
                grid, changed = (*grid, grid[-1] * ratio), True
            extended[optimizer][method] = grid
    return extended if changed else None


def _comparison_grid(plan: SweepPlan):
    for optimizer, counts in plan.sample_counts.items():
        for method in plan.methods:
            for n in [1] if method == "cross_entropy" else counts:
                for seed in plan.seeds:
                    yield optimizer, method, n, seed


def main_configs(
    plan: SweepPlan, chosen: dict[str, dict[str, float]]
) -> list[ClassificationConfig]:
    """The comparison runs at the chosen rates, seed by seed (a partial sweep holds whole seeds)."""
    long_runs = {tuple(run) for run in plan.long_runs}
    configs = []
    for optimizer, method, n, seed in _comparison_grid(plan):
        steps = plan.long_steps if (optimizer, method, n) in long_runs else plan.base.steps
        configs.append(_config(plan, optimizer, method, n, chosen[optimizer][method], seed, steps))
    return sorted(configs, key=lambda c: c.task_seed)  # stable: keeps the grid order per seed


def run_path(out: str | pathlib.Path, stage: str, config: ClassificationConfig) -> pathlib.Path:
    """Where a run's JSON lives, e.g. ``out/main/sgd/maxrl-N128-lr10-task0-train0.json``."""
    name = (
        f"{config.method}-N{config.num_samples}-lr{config.learning_rate:g}"
        f"-task{config.task_seed}-train{config.train_seed}.json"
    )
    return pathlib.Path(out) / stage / config.optimizer / name


def write_json(path: pathlib.Path, data: object) -> None:
    """Atomically write ``data`` as indented JSON."""
    text = (json.dumps(data, indent=1) + "\n").encode()
    atomic_write(path, lambda handle: handle.write(text))


def load_run(path: pathlib.Path, config: ClassificationConfig | None = None) -> RunResult | None:
    """The run stored at ``path``, or None if there is none; refuses a different config there."""
    if not path.exists():
        return None
    run = RunResult.from_dict(json.loads(path.read_text()))
    if config is not None and run.config != config.to_dict():
        raise ValueError(
            f"{path} holds a run with another config; remove it or write to another folder"
        )
    return run


def execute(
    config: ClassificationConfig,
    device: torch.device | str,
    task: ClassificationTask | None = None,
    progress: bool = False,
    keep_examples_at: tuple[int, ...] = (),
) -> RunResult:
    """Train one run and attach its provenance; a diverged run comes back with ``error`` set."""
    started, clock = time.time(), time.perf_counter()
    try:
        result, _ = train(
            config, device=device, task=task, progress=progress, keep_examples_at=keep_examples_at
        )
    except NonFiniteTrainingError as error:
        result = RunResult(config=config.to_dict(), error=str(error))
    result.provenance = provenance(config.to_dict(), device, started, time.perf_counter() - clock)
    return result


def final_score(run: RunResult, metric: str) -> float:
    """The final value of ``metric`` with the sign that makes larger worse (inf if diverged)."""
    if run.error:
        return math.inf
    value = run.final(metric)
    return value if metric == "nll" else -value


def choose_learning_rates(
    runs: list[RunResult], metric: str = "nll"
) -> dict[str, dict[str, float]]:
    """The rate with the best mean final ``metric`` over seeds, per optimizer and method.

    Ties go to the smaller rate. Returns ``{optimizer: {method: rate}}``.
    """
    scores: dict[tuple[str, str, float], list[float]] = {}
    for run in runs:
        c = run.config
        scores.setdefault((c["optimizer"], c["method"], c["learning_rate"]), []).append(
            final_score(run, metric)
        )
    chosen: dict[str, dict[str, float]] = {}
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for (optimizer, method, lr), values in sorted(scores.items()):
        mean = sum(values) / len(values)
        key = (optimizer, method)
        if key not in best or mean < best[key][0]:
            best[key] = (mean, lr)
            chosen.setdefault(optimizer, {})[method] = lr
    return chosen


def check_output_folder(out: str | pathlib.Path) -> pathlib.Path:
    """Refuse an output path that is a file or whose nearest existing parent is not writable.

    Creates nothing. Returns the path.
    """
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"output folder {path} exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output folder {path}: {existing} is not a writable folder")
    return path


def run_sweep(
    plan: SweepPlan,
    out: str | pathlib.Path,
    device: torch.device | str = "cpu",
    *,
    progress: bool = False,
    echo: Callable[[str], object] = print,
) -> dict[str, dict[str, float]]:
    """Run (or resume) the sweep into ``out``; returns the chosen learning rates."""
    out = check_output_folder(out)
    plan_path = out / "plan.json"
    if plan_path.exists() and json.loads(plan_path.read_text()) != plan.to_dict():
        raise ValueError(
            f"{plan_path} holds another plan; resume with the same flags or use another folder"
        )
    write_json(plan_path, plan.to_dict())
    grids = initial_grids(plan)
    for extension in range(plan.grid_extensions + 1):
        tuned = _run_all("tune", tune_configs(plan, grids), out, device, progress, echo, ())
        chosen = choose_learning_rates(tuned, plan.selection_metric)
        wider = extend_grids(grids, chosen) if extension < plan.grid_extensions else None
        if wider is None:
            break
        grids = wider
    write_json(
        out / "learning_rates.json",
        {"metric": plan.selection_metric, "chosen": chosen, "grids": grids},
    )
    # A long run also keeps its per-example pass rates where the other runs stop.
    _run_all("main", main_configs(plan, chosen), out, device, progress, echo, (plan.base.steps,))
    return chosen


def _run_all(stage, configs, out, device, progress, echo, keep_at) -> list[RunResult]:
    results, cache = [], {}
    for index, config in enumerate(configs, 1):
        path = run_path(out, stage, config)
        run = load_run(path, config)
        if run is None:
            key = (config.num_classes, config.input_dim, config.label_temperature,
                   config.train_size, config.validation_size, config.task_seed)  # fmt: skip
            if key not in cache:  # a few MB per task: keep every task of the stage
                cache[key] = make_task(config, device)
            keep = tuple(step for step in keep_at if step < config.steps)
            run = execute(config, device, cache[key], progress, keep)
            write_json(path, run.to_dict())
            state = run.error or (f"nll {run.final('nll'):.3f} pass@1 {run.final('pass@1'):.4f}")
            echo(
                f"[{stage} {index}/{len(configs)}] {config.optimizer} {config.label} "
                f"lr {config.learning_rate:g} seed {config.task_seed}: {state} "
                f"({run.provenance['wall_seconds']:.0f} s)"
            )
        results.append(run)
    return results
