r"""The maze through TRL, end to end: warm start, held-out pass rate, TRL training, pass rate.

:func:`warm_start` builds the data and the model and runs the supervised warm start;
:func:`train_maze_with_trl` trains one estimator from a warm start with
:class:`~companion.integrations.trl.CompanionGRPOTrainer`; :func:`compare_with_trl` runs several
estimators from the same warm start of each seed (a paired comparison) and returns a
JSON-ready dict with a ``provenance`` block.

Derived in: chapter 10.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import math
import os
import platform
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import transformers
import trl

from companion.integrations.trl import CompanionGRPOTrainer, grpo_config
from companion.integrations.trl_maze.task import (
    make_mazes,
    maze_dataset,
    maze_pass_rates,
    maze_prompt_text,
    maze_reward,
    maze_tokenizer,
    sft_warm_start,
    tiny_causal_lm,
)
from companion.maze.env import Maze, encode_prompt, max_answer_length, prompt_length
from companion.provenance import device_name, git_state

__all__ = [
    "TRLMazeConfig",
    "TRLMazeResult",
    "WarmStart",
    "compare_with_trl",
    "provenance",
    "slice_config",
    "train_maze_with_trl",
    "warm_start",
]


@dataclass
class TRLMazeConfig:
    """Everything one maze-through-TRL run needs (CPU-sized defaults, 3x3-cell mazes).

    The ``eval_mazes`` evaluation mazes are drawn apart from the ``train_mazes`` training
    mazes (held out); ``eval_mazes = 0`` skips the evaluation (pass rates are then NaN).
    """

    cells: int = 3
    train_mazes: int = 512
    eval_mazes: int = 64
    eval_samples: int = 16
    sft_steps: int = 600
    sft_batch: int = 64
    sft_learning_rate: float = 3e-3
    rl_steps: int = 60
    prompts_per_step: int = 8
    num_generations: int = 8
    learning_rate: float = 2e-4
    advantage: str = "maxrl"
    family: str = "llama"  # saved with a tokenizer that AutoTokenizer loads back (not qwen2)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.eval_mazes < 0 or self.eval_samples < 1 or self.train_mazes < 1:
            raise ValueError(
                "TRLMazeConfig: train_mazes and eval_samples must be >= 1, eval_mazes >= 0"
            )
        prompt_length(self.cells)  # validates cells


@dataclass
class WarmStart:
    """A warm-started model and the data it was trained and evaluated on."""

    config: TRLMazeConfig
    train: list[Maze]
    held_out: list[Maze]
    model: transformers.PreTrainedModel
    sft_losses: list[float]
    per_maze_before: np.ndarray  # (eval_mazes,), empty without evaluation


@dataclass
class TRLMazeResult:
    """What a run measured. Pass rates are NaN when ``eval_mazes == 0``."""

    config: dict
    trl_version: str
    world_size: int
    process_index: int
    pass_rate_before: float
    pass_rate_after: float
    per_maze_before: list[float] = field(default_factory=list)
    per_maze_after: list[float] = field(default_factory=list)
    sft_losses: list[float] = field(default_factory=list)
    reward_history: list[float] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)
    parameter_change: float = 0.0
    seconds: float = 0.0
    trainer: object = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready: without the trainer, NaN as None."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trainer"}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def warm_start(config: TRLMazeConfig) -> WarmStart:
    """Draw the training and held-out mazes, build the model, run the supervised warm start and
    measure the held-out pass rate.

    Derived in: chapter 10.
    """
    train = make_mazes(config.cells, config.train_mazes, seed=config.seed)
    held_out = (
        make_mazes(
            config.cells,
            config.eval_mazes,
            seed=config.seed + 10_000,
            exclude={m.key() for m in train},
        )
        if config.eval_mazes
        else []
    )
    model = tiny_causal_lm(
        family=config.family,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        max_positions=prompt_length(config.cells) + max_answer_length(config.cells) + 8,
        seed=config.seed,
    )
    losses = sft_warm_start(
        model,
        train,
        steps=config.sft_steps,
        batch_size=config.sft_batch,
        learning_rate=config.sft_learning_rate,
        seed=config.seed,
    )
    before = (
        maze_pass_rates(model, held_out, num_samples=config.eval_samples, seed=config.seed)
        if held_out
        else np.zeros(0)
    )
    return WarmStart(config, train, held_out, model, losses, before)


def train_maze_with_trl(
    config: TRLMazeConfig,
    output_dir: str | os.PathLike | None = None,
    num_processes: int = 1,
    quiet: bool = True,
    trainer_class: type | None = None,
    warm: WarmStart | None = None,
) -> TRLMazeResult:
    r"""Warm-start a tiny LM on BFS answers, then train it with TRL and a companion estimator.

    ``config.rl_steps`` optimizer steps of :class:`CompanionGRPOTrainer` (or ``trainer_class``,
    a subclass), ``config.prompts_per_step`` mazes times ``config.num_generations`` completions
    each, reward :func:`maze_reward`; the held-out pass rate before and after.
    ``parameter_change`` is :math:`\lVert\theta_{\text{after}} - \theta_{\text{before RL}}\rVert_2`.
    ``warm`` (from :func:`warm_start` with the same data and model settings) is copied, not
    changed; without it the warm start runs here. Under ``torchrun``/``accelerate launch``
    pass ``num_processes`` = the world size. With ``output_dir`` the trained model and the
    tokenizer are saved there (``save_pretrained`` format) and, on the main process,
    ``result.json`` with a provenance block.

    Derived in: chapter 10.
    """
    started, wall_start = time.time(), time.perf_counter()
    record_source = provenance(asdict(config), started) if output_dir is not None else None
    warm = warm_start(config) if warm is None else warm
    model = copy.deepcopy(warm.model)
    initial = [p.detach().clone() for p in model.parameters()]
    with tempfile.TemporaryDirectory() as scratch:
        args = grpo_config(
            str(output_dir or scratch),
            max_steps=config.rl_steps,
            prompts_per_step=config.prompts_per_step,
            num_generations=config.num_generations,
            num_processes=num_processes,
            max_completion_length=max_answer_length(config.cells),
            learning_rate=config.learning_rate,
            seed=config.seed,
        )
        trainer = (trainer_class or CompanionGRPOTrainer)(
            model=model,
            reward_funcs=maze_reward,
            args=args,
            train_dataset=maze_dataset(warm.train),
            processing_class=maze_tokenizer(),
            advantage=config.advantage,
        )
        if quiet:  # no per-step dictionaries on stdout; the history stays in trainer.state
            trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        trainer.train()
    model = trainer.model
    change = math.sqrt(
        sum(
            float((p.detach().cpu() - q.cpu()).pow(2).sum())
            for p, q in zip(model.parameters(), initial, strict=True)
        )
    )
    after = (
        maze_pass_rates(model, warm.held_out, num_samples=config.eval_samples, seed=config.seed + 1)
        if warm.held_out
        else np.zeros(0)
    )
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    result = TRLMazeResult(
        config=asdict(config),
        trl_version=trl.__version__,
        world_size=trainer.accelerator.num_processes,
        process_index=trainer.accelerator.process_index,
        pass_rate_before=_mean_or_nan(warm.per_maze_before),
        pass_rate_after=_mean_or_nan(after),
        per_maze_before=warm.per_maze_before.tolist(),
        per_maze_after=after.tolist(),
        sft_losses=list(warm.sft_losses),
        reward_history=list(trainer.reward_history),
        loss_history=[float(x) for x in losses],
        parameter_change=change,
        seconds=time.perf_counter() - wall_start,
        trainer=trainer,
    )
    if output_dir is not None:
        trainer.save_model(str(output_dir))  # model, config and tokenizer files
        if trainer.accelerator.is_main_process:
            _check_saved_tokenizer(output_dir, warm.held_out or warm.train)
            record_source["wall_seconds"] = round(time.time() - started, 1)
            record = {**result.to_dict(), "provenance": record_source}
            Path(output_dir, "result.json").write_text(json.dumps(record, indent=1) + "\n")
    return result


def _check_saved_tokenizer(output_dir: str | os.PathLike, mazes: list[Maze]) -> None:
    """Warn when ``AutoTokenizer`` does not load back the saved maze tokenizer (transformers
    replaces it by ``Qwen2Tokenizer`` next to a qwen2 config, which drops every maze word)."""
    text = maze_prompt_text(mazes[0])
    loaded = transformers.AutoTokenizer.from_pretrained(str(output_dir))
    if loaded(text)["input_ids"] != encode_prompt(mazes[0]):
        warnings.warn(
            f"AutoTokenizer.from_pretrained({str(output_dir)!r}) loads {type(loaded).__name__}, "
            "which does not reproduce the maze tokenizer; load it with "
            "transformers.PreTrainedTokenizerFast.from_pretrained, or train with family='llama'",
            stacklevel=3,
        )


def compare_with_trl(
    config: TRLMazeConfig, methods: list[str], seeds: list[int], progress: bool = False
) -> dict:
    """Train each of ``methods`` from the same warm start of each seed (so the comparison is
    paired: same model before RL, same held-out mazes) and collect the runs.

    Returns ``{"provenance": ..., "config": ..., "methods": ..., "seeds": ..., "runs": [...]}``,
    one run per (seed, method) with the fields of :class:`TRLMazeResult`.

    Derived in: chapter 10.
    """
    started = time.time()
    setup = {**asdict(config), "methods": list(methods), "seeds": list(seeds)}
    source = provenance(setup, started)  # the code and machine as the run starts
    runs = []
    for seed in seeds:
        seeded = dataclasses.replace(config, seed=seed)
        warm = warm_start(seeded)
        for method in methods:
            result = train_maze_with_trl(dataclasses.replace(seeded, advantage=method), warm=warm)
            runs.append({"method": method, "seed": seed, **result.to_dict()})
            if progress:
                print(
                    f"seed {seed} {method}: pass rate {result.pass_rate_before:.3f} -> "
                    f"{result.pass_rate_after:.3f} ({result.seconds:.0f} s)",
                    flush=True,
                )
    source["wall_seconds"] = round(time.time() - started, 1)
    return {
        "provenance": source,
        "config": asdict(config),
        "methods": list(methods),
        "seeds": list(seeds),
        "runs": runs,
    }


def slice_config(config: TRLMazeConfig) -> TRLMazeConfig:
    """A seconds-long slice of a run: the same data, model and settings, with the first 30 steps
    of the warm start, 3 RL steps and 8 held-out mazes x 4 samples. Its warm-start losses are
    the first 30 of the full run's (same seed), and re-running it must reproduce a stored slice.

    Derived in: chapter 10.
    """
    return dataclasses.replace(
        config,
        sft_steps=min(30, config.sft_steps),
        rl_steps=min(3, config.rl_steps),
        eval_mazes=min(8, config.eval_mazes),
        eval_samples=min(4, config.eval_samples),
    )


def provenance(config: dict, started: float) -> dict:
    """Where a result comes from, taken as it starts: the exact config, the git commit and
    whether the tree is clean, the device, the library versions, the start time (UTC) and the
    wall time so far (the caller updates ``wall_seconds`` when it finishes).

    Derived in: chapter 10.
    """
    code = git_state()
    if torch.cuda.is_available():
        device = f"cuda: {device_name('cuda')}"
    else:
        device = f"cpu: {device_name('cpu')}, {os.cpu_count()} cores"
    return {
        "config": config,
        "git_commit": code["commit"],
        "git_clean": code["clean"],
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "trl": trl.__version__,
            "transformers": transformers.__version__,
        },
        "start_time": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "wall_seconds": round(time.time() - started, 1),
    }
