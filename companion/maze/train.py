r"""SFT warm start, then on-policy RL with REINFORCE, RLOO, GRPO or MaxRL, and evaluation.

One run folder holds everything, each file written atomically (temp file + ``os.replace``)::

    run_dir/config.json
    run_dir/seed{s}/sft/{checkpoint.pt, metrics.json, eval.json}
    run_dir/seed{s}/{method}/{checkpoint.pt, metrics.json, eval.json}
    run_dir/results.json

``checkpoint.pt`` stores the model, the optimizer and the sampling generator's state and the step,
so an interrupted run resumes where its last checkpoint left it, with the same result as an
uninterrupted one. Training prompts depend only on (seed, step), never on earlier draws.

Held-out evaluation mazes come from their own seed stream, and every training maze whose hash
equals an evaluation maze's is dropped from the training pool.

Derived in: chapter 9.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from companion.estimators import ADVANTAGES, policy_gradient_loss
from companion.maze.env import (
    DONE,
    PAD,
    VOCAB_SIZE,
    Maze,
    bfs_path,
    draw_mazes,
    encode_prompt,
    max_answer_length,
    prompt_length,
    verify_batch,
)
from companion.maze.model import MazeTransformer, ModelConfig
from companion.maze.sampler import sample, token_logprobs
from companion.passk import estimate_pass_at_k
from companion.runtime import atomic_write, default_device, seed_everything

try:  # progress bars are optional (a bare GPU machine may lack tqdm)
    from tqdm import tqdm
except ImportError:  # pragma: no cover

    class tqdm:  # noqa: N801 - same name as the library's class
        def __init__(self, *args, **kwargs) -> None:
            pass

        def update(self, count: int = 1) -> None:
            pass

        def close(self) -> None:
            pass


METHODS: tuple[str, ...] = ("reinforce", "rloo", "grpo", "maxrl")
TRAIN_STREAM, EVAL_STREAM = 1, 2


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclass
class MazeConfig:
    """Everything that defines one maze experiment. ``cpu()``/``gpu()`` are the two scales."""

    scale: str = "cpu"
    device: str = "cpu"
    cells: int = 3
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    sft_steps: int = 150
    sft_batch: int = 32
    sft_lr: float = 2e-3
    rl_steps: int = 20
    prompts_per_step: int = 8
    num_samples: int = 16
    rl_lr: float = 3e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    methods: tuple[str, ...] = METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    train_pool: int = 2000
    eval_mazes: int = 32
    eval_samples: int = 32
    max_rollouts_per_call: int = 4096
    checkpoint_every: int = 50
    autocast: bool = False

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        self.seeds = tuple(int(s) for s in self.seeds)
        unknown = [m for m in self.methods if m not in ADVANTAGES]
        if unknown:
            raise ValueError(f"MazeConfig: unknown methods {unknown}; known: {sorted(ADVANTAGES)}")
        if self.num_samples < 2:
            raise ValueError(
                "MazeConfig: num_samples must be >= 2 (RLOO, GRPO and MaxRL "
                "Algorithm 1 need N >= 2)"
            )
        if self.eval_samples < 1 or self.checkpoint_every < 1:
            raise ValueError("MazeConfig: eval_samples and checkpoint_every must be >= 1")
        prompt_length(self.cells)  # validates cells

    @classmethod
    def cpu(cls, **overrides) -> MazeConfig:
        """Small scale for 2 CPU cores: 3x3-cell mazes (7x7 tokens), a ~0.1M-parameter model."""
        return cls(**{"scale": "cpu", "device": "cpu", **overrides})

    @classmethod
    def gpu(cls, **overrides) -> MazeConfig:
        """The scale measured on one GPU: 4x4-cell mazes (9x9 tokens), a 0.81M-parameter model,
        SFT 1500 x 64, RL 200 steps of 32 prompts x 64 rollouts, bf16 autocast."""
        values = dict(
            scale="gpu",
            device="cuda",
            cells=4,
            d_model=128,
            n_layers=4,
            n_heads=4,
            sft_steps=1500,
            sft_batch=64,
            sft_lr=5e-4,
            rl_steps=200,
            prompts_per_step=32,
            num_samples=64,
            rl_lr=1e-4,
            train_pool=50000,
            eval_mazes=128,
            eval_samples=256,
            max_rollouts_per_call=8192,
            seeds=(0, 1, 2),
            checkpoint_every=50,
            autocast=True,
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_device(cls, device: torch.device | str | None = None, **overrides) -> MazeConfig:
        """GPU scale on CUDA, CPU scale otherwise (``device=None``: ``default_device()``)."""
        device = torch.device(device) if device is not None else default_device()
        if device.type == "cuda":
            return cls.gpu(device=str(device), **overrides)
        return cls.cpu(device=str(device), **overrides)

    def model_config(self) -> ModelConfig:
        context = prompt_length(self.cells) + max_answer_length(self.cells)
        return ModelConfig(
            vocab_size=VOCAB_SIZE,
            context_length=context,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
        )

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["methods"], out["seeds"] = list(self.methods), list(self.seeds)
        return out


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
@dataclass
class MazeBatchData:
    r"""A set of M mazes as tensors.

    ============  ==============  ==================================================
    field         shape           meaning
    ============  ==============  ==================================================
    ``prompts``   ``(M, T0)``     long, prompt tokens
    ``open``      ``(M, S, S)``   bool, walkable squares
    ``start``     ``(M, 2)``      long, START square
    ``goal``      ``(M, 2)``      long, GOAL square
    ``answers``   ``(M, La)``     long, BFS moves + DONE, PAD after (SFT targets)
    ``mask``      ``(M, La)``     bool, True on the target tokens
    ============  ==============  ==================================================
    """

    mazes: list[Maze]
    prompts: torch.Tensor
    open: torch.Tensor
    start: torch.Tensor
    goal: torch.Tensor
    answers: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.mazes)


_MAZE_CACHE: dict[tuple, list[Maze]] = {}


def evaluation_mazes(cells: int, count: int) -> list[Maze]:
    """The held-out mazes: the first ``count`` distinct mazes of the evaluation seed stream."""
    key = ("eval", cells, count)
    if key not in _MAZE_CACHE:
        rng = np.random.default_rng([EVAL_STREAM, cells])
        _MAZE_CACHE[key] = draw_mazes(cells, count, rng)
    return _MAZE_CACHE[key]


def training_mazes(cells: int, count: int, exclude: set[str]) -> list[Maze]:
    """``count`` mazes of the training seed stream (repeats allowed), none in ``exclude``."""
    key = ("train", cells, count, hash(frozenset(exclude)))
    if key not in _MAZE_CACHE:
        rng = np.random.default_rng([TRAIN_STREAM, cells])
        _MAZE_CACHE[key] = draw_mazes(cells, count, rng, exclude=exclude, distinct=False)
    return _MAZE_CACHE[key]


def build_data(mazes: list[Maze], device: torch.device | str) -> MazeBatchData:
    """Tensors for ``mazes`` (all of one size)."""
    cells = mazes[0].cells
    if any(m.cells != cells for m in mazes):
        raise ValueError("build_data: all mazes must have the same size")
    answer_len = max_answer_length(cells)
    answers = torch.full((len(mazes), answer_len), PAD, dtype=torch.long)
    mask = torch.zeros((len(mazes), answer_len), dtype=torch.bool)
    for row, maze in enumerate(mazes):
        target = bfs_path(maze) + [DONE]
        answers[row, : len(target)] = torch.tensor(target)
        mask[row, : len(target)] = True
    used = int(mask.sum(1).max())
    return MazeBatchData(
        mazes=mazes,
        prompts=torch.tensor([encode_prompt(m) for m in mazes], dtype=torch.long).to(device),
        open=torch.from_numpy(np.stack([m.open for m in mazes])).to(device),
        start=torch.tensor([m.start for m in mazes], dtype=torch.long).to(device),
        goal=torch.tensor([m.goal for m in mazes], dtype=torch.long).to(device),
        answers=answers[:, :used].to(device),
        mask=mask[:, :used].to(device),
    )


def batch_indices(seed: int, phase: int, step: int, batch: int, pool: int) -> np.ndarray:
    """Pool indices of one step's mazes: a pure function of (seed, phase, step)."""
    return np.random.default_rng([seed, phase, step]).integers(pool, size=batch)


# --------------------------------------------------------------------------------------------
# atomic files and checkpoints
# --------------------------------------------------------------------------------------------
def atomic_write_json(data: object, path: Path) -> None:
    """Write ``data`` as JSON through :func:`companion.runtime.atomic_write`."""
    text = json.dumps(data, indent=1).encode()
    atomic_write(path, lambda handle: handle.write(text))


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` through :func:`companion.runtime.atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


def _make_generator(device: str, seed: int) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _run_phase(
    folder: Path,
    model: MazeTransformer,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    total_steps: int,
    step_fn,
    config: MazeConfig,
    description: str,
    progress: bool,
    stop_after: int | None,
) -> list[dict] | None:
    """Run ``step_fn(step) -> metrics`` for the remaining steps, checkpointing; resume if
    ``folder/checkpoint.pt`` exists. Returns the metrics of all steps, or None when
    ``stop_after`` steps of this call ran out first (an interruption, for tests)."""
    checkpoint = folder / "checkpoint.pt"
    metrics: list[dict] = []
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=config.device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        metrics, start = state["metrics"], state["step"]

    def save(step: int) -> None:
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "metrics": metrics,
                "step": step,
            },
            checkpoint,
        )

    bar = tqdm(
        total=total_steps,
        initial=start,
        desc=description,
        file=sys.stderr,
        disable=not progress,
        leave=False,
    )
    for step in range(start, total_steps):
        if stop_after is not None and step - start >= stop_after:
            bar.close()
            return None
        metrics.append(step_fn(step))
        bar.update(1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps:
            save(step + 1)
    bar.close()
    if start == total_steps == 0:
        save(0)
    return metrics


def _optimizer(model: MazeTransformer, lr: float, config: MazeConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)


def _clip_and_step(model, optimizer, loss: torch.Tensor, config: MazeConfig) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return grad_norm.item()


# --------------------------------------------------------------------------------------------
# SFT
# --------------------------------------------------------------------------------------------
def train_sft(
    config: MazeConfig,
    seed: int,
    pool: MazeBatchData,
    folder: Path,
    progress: bool = False,
    stop_after: int | None = None,
) -> tuple[MazeTransformer, list[dict] | None]:
    r"""Supervised warm start on BFS paths: minimise the mean token cross-entropy
    :math:`-\frac{1}{\#\mathrm{tokens}}\sum \log\pi(z^*_t\mid x, z^*_{<t})` of the shortest
    path plus DONE. Returns the model and the per-step metrics (None if interrupted)."""
    seed_everything(seed)
    model = MazeTransformer(config.model_config()).to(config.device)
    optimizer = _optimizer(model, config.sft_lr, config)
    generator = _make_generator(config.device, seed)

    def step_fn(step: int) -> dict:
        index = torch.as_tensor(
            batch_indices(seed, 0, step, config.sft_batch, len(pool)), device=config.device
        )
        mask = pool.mask[index].float()
        logp = token_logprobs(model, pool.prompts[index], pool.answers[index], config.autocast)
        loss = -(logp * mask).sum() / mask.sum()
        grad_norm = _clip_and_step(model, optimizer, loss, config)
        return {"loss": loss.item(), "grad_norm": grad_norm}

    metrics = _run_phase(
        folder,
        model,
        optimizer,
        generator,
        config.sft_steps,
        step_fn,
        config,
        f"SFT seed {seed}",
        progress,
        stop_after,
    )
    return model, metrics


# --------------------------------------------------------------------------------------------
# RL
# --------------------------------------------------------------------------------------------
def sample_and_verify(
    model: MazeTransformer,
    data: MazeBatchData,
    index: torch.Tensor,
    num_samples: int,
    generator: torch.Generator,
    config: MazeConfig,
):
    """Sample ``N = num_samples`` answers at temperature 1 for the mazes ``index`` (P of them)
    and verify them.

    Returns ``(rollouts, flat_tokens, rewards)``: the :class:`Rollouts`, their tokens
    ``(P*N, L)`` and the 0/1 rewards ``(P, N)``.
    """
    rollouts = sample(
        model,
        data.prompts[index],
        num_samples,
        max_answer_length(config.cells),
        temperature=1.0,
        generator=generator,
        autocast=config.autocast,
    )
    flat_tokens = rollouts.tokens.reshape(index.shape[0] * num_samples, -1)  # (P*N, L)
    rewards = verify_batch(
        data.open[index].repeat_interleave(num_samples, 0),
        data.start[index].repeat_interleave(num_samples, 0),
        data.goal[index].repeat_interleave(num_samples, 0),
        flat_tokens,
    ).view(index.shape[0], num_samples)  # (P, N)
    return rollouts, flat_tokens, rewards


def rl_step(
    model: MazeTransformer,
    optimizer: torch.optim.Optimizer,
    method: str,
    data: MazeBatchData,
    index: torch.Tensor,
    generator: torch.Generator,
    config: MazeConfig,
) -> dict:
    r"""One fully on-policy step: sample N answers for each of the P mazes at temperature 1,
    score them with the verifier, turn rewards ``(P, N)`` into advantages with
    ``ADVANTAGES[method]``, and take one optimizer step on the token-mean surrogate
    :math:`-\sum_{x,i,t} A_{x,i}\log\pi(z_{x,i,t}\mid\cdot) / \#\mathrm{tokens}`."""
    num_prompts, num_samples = index.shape[0], config.num_samples
    rollouts, flat_tokens, rewards = sample_and_verify(
        model, data, index, num_samples, generator, config
    )
    advantages = ADVANTAGES[method](rewards)  # (P, N)
    logp = token_logprobs(model, data.prompts[index], flat_tokens, config.autocast)
    logp = logp.view(num_prompts, num_samples, -1)  # (P, N, L)
    loss = policy_gradient_loss(logp, advantages, rollouts.mask, aggregation="token_mean")
    if not torch.isfinite(loss):
        raise FloatingPointError(f"rl_step: the {method} loss is not finite")
    grad_norm = _clip_and_step(model, optimizer, loss, config)
    successes = rewards.sum(dim=1)
    return {
        "loss": loss.item(),
        "grad_norm": grad_norm,
        "mean_reward": float(rewards.mean()),
        "frac_any_success": float((successes > 0).float().mean()),
        "frac_all_success": float((successes == num_samples).float().mean()),
        "tokens": rollouts.num_generated,
    }


def train_rl(
    config: MazeConfig,
    method: str,
    seed: int,
    sft_model: MazeTransformer,
    pool: MazeBatchData,
    folder: Path,
    progress: bool = False,
    stop_after: int | None = None,
) -> tuple[MazeTransformer, list[dict] | None]:
    """RL from a copy of ``sft_model`` with ``method``; same prompts for every method."""
    if method not in ADVANTAGES:
        raise ValueError(f"train_rl: unknown method {method!r}; known: {sorted(ADVANTAGES)}")
    seed_everything(seed)
    model = copy.deepcopy(sft_model)
    optimizer = _optimizer(model, config.rl_lr, config)
    generator = _make_generator(config.device, 1000 + seed)

    def step_fn(step: int) -> dict:
        index = batch_indices(seed, 1, step, config.prompts_per_step, len(pool))
        index = torch.as_tensor(index, device=config.device)
        return rl_step(model, optimizer, method, pool, index, generator, config)

    metrics = _run_phase(
        folder,
        model,
        optimizer,
        generator,
        config.rl_steps,
        step_fn,
        config,
        f"{method} seed {seed}",
        progress,
        stop_after,
    )
    return model, metrics


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def evaluate(
    model: MazeTransformer, data: MazeBatchData, num_samples: int, seed: int, config: MazeConfig
) -> dict:
    r"""Sample ``n = num_samples`` answers per held-out maze, count the correct ones ``c``, and
    estimate pass@k for k = 1..n with the unbiased :func:`estimate_pass_at_k`, averaged over
    mazes. Also the fraction of answers that end with DONE and the mean answer length."""
    generator = _make_generator(config.device, 10_000 + seed)
    per_call = max(1, config.max_rollouts_per_call // num_samples)
    correct, ended, lengths = [], [], []
    for begin in range(0, len(data), per_call):
        index = torch.arange(begin, min(begin + per_call, len(data)), device=config.device)
        rollouts, flat, rewards = sample_and_verify(
            model, data, index, num_samples, generator, config
        )
        correct.append(rewards.sum(1).long().cpu())
        ended.append((flat == DONE).any(dim=1).float().cpu())
        lengths.append(rollouts.mask.reshape(len(flat), -1).sum(1).float().cpu())
    counts = torch.cat(correct).numpy()
    pass_at_k = [
        float(np.mean(estimate_pass_at_k(num_samples, counts, k)))
        for k in range(1, num_samples + 1)
    ]
    return {
        "num_samples": num_samples,
        "correct": counts.tolist(),
        "pass_at_k": pass_at_k,
        "frac_done": float(torch.cat(ended).mean()),
        "mean_length": float(torch.cat(lengths).mean()),
    }


# --------------------------------------------------------------------------------------------
# the whole experiment
# --------------------------------------------------------------------------------------------
def prepare_data(config: MazeConfig) -> tuple[MazeBatchData, MazeBatchData]:
    """(training pool, held-out evaluation set); raises if a held-out maze is in the pool."""
    eval_mazes = evaluation_mazes(config.cells, config.eval_mazes)
    eval_keys = {m.key() for m in eval_mazes}
    pool = training_mazes(config.cells, config.train_pool, exclude=eval_keys)
    if eval_keys & {m.key() for m in pool}:
        raise RuntimeError("prepare_data: a held-out maze is in the training pool")
    return build_data(pool, config.device), build_data(eval_mazes, config.device)


def _load_json(path: Path) -> object | None:
    return json.loads(path.read_text()) if path.exists() else None


def run_experiment(config: MazeConfig, run_dir: Path | str, progress: bool = True) -> dict:
    """SFT per seed, then RL with every method from that seed's SFT checkpoint, evaluation of
    every model on the held-out mazes; resumes from whatever ``run_dir`` already holds.

    Returns ``{"config", "seeds": {seed: {"sft"|method: {"train": [...], "eval": {...}}}},
    "timings": {...}}`` and writes it to ``run_dir/results.json``.
    """
    run_dir = Path(run_dir)
    stored = _load_json(run_dir / "config.json")
    if stored is not None and stored != config.to_dict():
        raise ValueError(
            f"run_experiment: {run_dir} holds a run with another config; use a new "
            "folder or delete it"
        )
    atomic_write_json(config.to_dict(), run_dir / "config.json")
    started = time.perf_counter()
    pool, held_out = prepare_data(config)
    timings: dict[str, float] = {"data": time.perf_counter() - started}
    results: dict = {"config": config.to_dict(), "seeds": {}, "timings": timings}
    for seed in config.seeds:
        seed_dir = run_dir / f"seed{seed}"
        per_seed: dict = {}
        t0 = time.perf_counter()
        sft_model, metrics = train_sft(config, seed, pool, seed_dir / "sft", progress)
        timings[f"sft/seed{seed}"] = time.perf_counter() - t0
        phases = [("sft", sft_model, metrics)]
        for method in config.methods:
            t0 = time.perf_counter()
            model, metrics = train_rl(
                config, method, seed, sft_model, pool, seed_dir / method, progress
            )
            timings[f"{method}/seed{seed}"] = time.perf_counter() - t0
            phases.append((method, model, metrics))
        for name, model, metrics in phases:
            t0 = time.perf_counter()
            eval_path = seed_dir / name / "eval.json"
            evaluation = _load_json(eval_path)
            if evaluation is None:
                evaluation = evaluate(model, held_out, config.eval_samples, seed, config)
                atomic_write_json(evaluation, eval_path)
            atomic_write_json(metrics, seed_dir / name / "metrics.json")
            timings[f"eval/{name}/seed{seed}"] = time.perf_counter() - t0
            per_seed[name] = {"train": metrics, "eval": evaluation}
        results["seeds"][str(seed)] = per_seed
    timings["total"] = time.perf_counter() - started
    atomic_write_json(results, run_dir / "results.json")
    return results


# --------------------------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------------------------
def pass_at_k_curves(results: dict, name: str) -> np.ndarray:
    """pass@k for k = 1..n of model ``name`` ("sft" or a method), one row per seed."""
    return np.array([results["seeds"][s][name]["eval"]["pass_at_k"] for s in results["seeds"]])


def efficiency_gain(baseline_curve: np.ndarray, curve: np.ndarray) -> tuple[int, float] | None:
    r"""Test-time scaling efficiency: with :math:`v` the baseline's pass@k at the largest k,
    the smallest :math:`k^*` with ``curve[k*] >= v``; returns ``(k*, k_max / k*)``, or None
    when ``curve`` never reaches ``v``. Curves are indexed by k - 1."""
    baseline_curve, curve = np.asarray(baseline_curve), np.asarray(curve)
    target = baseline_curve[-1]
    reached = np.nonzero(curve >= target)[0]
    if reached.size == 0:
        return None
    k_star = int(reached[0]) + 1
    return k_star, len(baseline_curve) / k_star


def summary_rows(results: dict, ks: tuple[int, ...]) -> list[dict]:
    """One row per model (SFT, then methods): mean and spread (std over seeds) of pass@k."""
    names = ["sft", *results["config"]["methods"]]
    rows = []
    for name in names:
        curves = pass_at_k_curves(results, name)
        row = {"name": name}
        for k in ks:
            values = curves[:, k - 1]
            row[f"pass@{k}"] = (float(values.mean()), float(values.std()))
        rows.append(row)
    return rows


def format_table(results: dict, ks: tuple[int, ...] | None = None) -> str:
    """A text table in the shape of the paper's Table 3 (mean ± std over seeds)."""
    n = results["config"]["eval_samples"]
    ks = ks or tuple(sorted({1, max(1, n // 2), n}))
    lines = ["model      " + "".join(f"{f'pass@{k}':>17}" for k in ks)]
    for row in summary_rows(results, ks):
        cells = "".join(f"{row[f'pass@{k}'][0]:>9.3f} ± {row[f'pass@{k}'][1]:.3f}" for k in ks)
        lines.append(f"{row['name']:<11}{cells}")
    return "\n".join(lines)


def save_figures(results: dict, run_dir: Path | str) -> list[Path]:
    """Coverage curves (pass@k vs k, log axis) and per-maze pass-rate histograms as PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from companion.plotting import book_style, method_color

    run_dir = Path(run_dir)
    names = ["sft", *results["config"]["methods"]]
    paths = []
    with book_style():
        fig, ax = plt.subplots()
        for name in names:
            curve = pass_at_k_curves(results, name).mean(0)
            ax.plot(np.arange(1, len(curve) + 1), curve, label=name, color=method_color(name))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k")
        ax.set_ylabel("pass@k (held-out mazes)")
        ax.legend()
        paths.append(run_dir / "coverage.png")
        tmp = run_dir / "coverage.tmp.png"
        fig.savefig(tmp)
        os.replace(tmp, paths[-1])
        plt.close(fig)
        fig, axes = plt.subplots(1, len(names), figsize=(2.2 * len(names), 2.6), sharey=True)
        n = results["config"]["eval_samples"]
        for ax, name in zip(axes, names, strict=True):
            rates = np.concatenate(
                [
                    np.array(results["seeds"][s][name]["eval"]["correct"]) / n
                    for s in results["seeds"]
                ]
            )
            ax.hist(rates, bins=np.linspace(0, 1, 11), color=method_color(name))
            ax.set_title(name)
            ax.set_xlabel("pass rate")
        paths.append(run_dir / "pass_rate_histograms.png")
        tmp = run_dir / "hist.tmp.png"
        fig.tight_layout()
        fig.savefig(tmp)
        os.replace(tmp, paths[-1])
        plt.close(fig)
    return paths


def describe(config: MazeConfig) -> str:
    """One line per setting of the scale, for printing."""
    params = MazeTransformer(config.model_config()).num_parameters()
    size = 2 * config.cells + 1
    return (
        f"scale {config.scale} on {config.device}: {config.cells}x{config.cells}-cell mazes "
        f"({size}x{size} tokens), model {params / 1e6:.3f}M params "
        f"({config.n_layers} layers, width {config.d_model}, {config.n_heads} heads)\n"
        f"SFT {config.sft_steps} steps x {config.sft_batch} mazes, lr {config.sft_lr:g}; "
        f"RL {config.rl_steps} steps x {config.prompts_per_step} mazes x "
        f"{config.num_samples} rollouts, lr {config.rl_lr:g}\n"
        f"methods {', '.join(config.methods)}; seeds {list(config.seeds)}; held-out "
        f"{config.eval_mazes} mazes x {config.eval_samples} samples; "
        f"train pool {config.train_pool}"
    )
