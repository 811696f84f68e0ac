r"""The whole experiment: for each seed SFT, then RL with every method from that checkpoint
(for every N of a sweep), evaluation on the held-out mazes; resumable, results with provenance.

One run folder holds everything (never committed)::

    run_dir/config.json
    run_dir/seed{s}/sft/{checkpoint.pt, eval.json}
    run_dir/seed{s}/{method}/{checkpoint.pt, eval.json}            (compare, fixed)
    run_dir/seed{s}/N{n}/{method}/{checkpoint.pt, eval.json}       (sweep)

Re-running a command on the same folder resumes from what it holds; it may ask for other seeds
(every other setting must be the same). After every finished run
the results file (``results_path``, e.g. ``book/results/09_mazes/compare_long.json``) is
rewritten with everything finished so far and ``"complete": false`` until the last one.

Derived in: chapter 9.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from companion.maze.config import MazeConfig
from companion.maze.data import MazeBatchData, prepare_data
from companion.maze.provenance import RunFileError, provenance, read_json, write_json
from companion.maze.train import Phase, evaluate, probe_reward, train_rl, train_sft

RESULTS_FORMAT = 1
_RUN_FILE_REMEDY = "delete it (that part is recomputed on the next run) or use a new run folder"


def check_device(config: MazeConfig) -> None:
    """Raise ``RuntimeError`` when ``config.device`` is CUDA and no CUDA GPU is visible."""
    if torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"the {config.scale} scale runs on {config.device}, but torch "
            f"{torch.__version__} sees no CUDA GPU; use --scale cpu or --scale long, or "
            "run on a machine with a CUDA GPU and a CUDA build of torch"
        )


def columns(metrics: list[dict]) -> dict:
    """Per-step metric dicts as columns; ``probe_reward`` and ``held_out_correct``, present on
    some steps only, become ``{"step": [...], "value": [...]}`` (step = steps done)."""
    out: dict = {}
    for name in (
        "loss",
        "grad_norm",
        "mean_reward",
        "frac_any_success",
        "frac_all_success",
        "tokens",
    ):
        if metrics and name in metrics[0]:
            out[name] = [m[name] for m in metrics]
    for name in ("probe_reward", "held_out_correct"):
        steps = [i + 1 for i, m in enumerate(metrics) if name in m]
        if steps:
            out[name] = {"step": steps, "value": [metrics[s - 1][name] for s in steps]}
    return out


def _evaluation(
    phase: Phase,
    folder: Path,
    held_out: MazeBatchData,
    pool: MazeBatchData,
    seed: int,
    config: MazeConfig,
    with_probe: bool,
) -> dict:
    """The held-out evaluation of a finished phase, cached in ``folder/eval.json``."""
    path = folder / "eval.json"
    stored = read_json(path, _RUN_FILE_REMEDY)
    if stored is None:
        began = time.perf_counter()
        stored = evaluate(phase.model, held_out, config.eval_samples, seed, config)
        if with_probe and config.probe_mazes:
            stored["probe_reward"] = probe_reward(phase.model, pool, seed, config)
        stored["seconds"] = time.perf_counter() - began
        write_json(stored, path)
    return stored


def _without_seeds(identity: dict) -> dict:
    """A run folder's identity without the seeds: each seed has its own folder, so more seeds
    can be added to a finished run."""
    return {**identity, "config": {**identity.get("config", {}), "seeds": None}}


def _record(phase: Phase, evaluation: dict) -> dict:
    return {"train": columns(phase.metrics), "eval": evaluation, "seconds": phase.seconds}


def _results(config: MazeConfig, experiment: str, samples: list[int], prov: dict) -> dict:
    return {
        "format": RESULTS_FORMAT,
        "experiment": experiment,
        "config": config.to_dict(),
        "num_samples": samples,
        "provenance": prov,
        "complete": False,
        "runs": {},
    }


def run_experiment(
    config: MazeConfig,
    run_dir: Path | str,
    *,
    samples: Sequence[int] | None = None,
    experiment: str = "compare",
    results_path: Path | str | None = None,
    command: str | None = None,
    progress: bool = True,
) -> dict:
    """SFT per seed, then RL with every method (and every N of ``samples``, a sweep) from that
    seed's SFT checkpoint; evaluation of every model on the held-out mazes.

    Returns ``{"config", "experiment", "num_samples", "provenance", "complete", "runs"}`` with
    ``runs[seed]["sft" | method]`` (or ``runs[seed]["N{n}"][method]`` for a sweep) each
    ``{"train": columns, "eval": {...}, "seconds"}``. Nothing is written before the config,
    the device and the data are known to be good.
    """
    check_device(config)
    sweep = samples is not None
    samples = [config.num_samples] if samples is None else [int(n) for n in samples]
    configs = {n: config.replace(num_samples=n) for n in samples}  # validates every N
    pool, held_out = prepare_data(config)
    run_dir = Path(run_dir)
    identity = {"experiment": experiment, "num_samples": samples, "config": config.to_dict()}
    stored = read_json(run_dir / "config.json", _RUN_FILE_REMEDY)
    if stored is not None and _without_seeds(stored) != _without_seeds(identity):
        raise RunFileError(
            f"{run_dir} holds a run with another configuration; use a new folder or delete it "
            "(only the seeds may change between runs in one folder)"
        )
    write_json(identity, run_dir / "config.json")
    began = time.perf_counter()
    results = _results(config, experiment, samples, provenance(config.to_dict(), command))

    def publish(complete: bool) -> None:
        results["complete"] = complete
        results["provenance"]["wall_seconds"] = round(time.perf_counter() - began, 1)
        if results_path is not None:
            write_json(results, results_path)

    for seed in config.seeds:
        seed_dir = run_dir / f"seed{seed}"
        runs: dict = {}
        results["runs"][str(seed)] = runs
        sft = train_sft(config, seed, pool, seed_dir / "sft", progress)
        sft_eval = _evaluation(sft, seed_dir / "sft", held_out, pool, seed, config, True)
        runs["sft"] = _record(sft, sft_eval)
        for n in samples:
            target = runs.setdefault(f"N{n}", {}) if sweep else runs
            for method in config.methods:
                folder = seed_dir / (f"N{n}/{method}" if sweep else method)
                phase = train_rl(
                    configs[n], method, seed, sft.model, pool, folder, held_out, progress
                )
                evaluation = _evaluation(phase, folder, held_out, pool, seed, configs[n], False)
                target[method] = _record(phase, evaluation)
                publish(False)
    publish(True)
    return results
