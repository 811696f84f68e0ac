r"""The training loop: SFT warm start, on-policy RL with any estimator, evaluation.

A phase (SFT, or RL with one method) lives in one folder::

    folder/checkpoint.pt   model, optimizer, the sampling generator's state, metrics, step

written atomically every ``checkpoint_every`` steps and read with ``weights_only=True``, so an
interrupted phase resumes where its last checkpoint left it, with the same result as an
uninterrupted one. The mazes of a step are a pure function of (seed, step)
(:func:`companion.maze.data.batch_indices`); evaluation and probe samples come from their own
generators, one per block of 32 mazes, seeded by (seed, purpose, block) only: every model of a
seed, at every step and with every method, is measured with the same random numbers (common
random numbers), and evaluating more or fewer mazes, or probing more often, never changes the
training trajectory.

Derived in: chapter 9.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from companion.estimators import ADVANTAGES, policy_gradient_loss
from companion.maze.config import MazeConfig
from companion.maze.data import MazeBatchData, batch_indices, stream_seed
from companion.maze.env import DONE, max_answer_length, verify_batch
from companion.maze.model import MazeTransformer
from companion.maze.provenance import load_checkpoint, save_checkpoint
from companion.maze.sampler import Rollouts, sample, token_logprobs
from companion.runtime import seed_everything

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


PHASE_SFT, PHASE_RL = 0, 1  # batch_indices streams
STREAM_EVAL, STREAM_PROBE = 10, 11  # evaluation generators
EVAL_BLOCK = 32  # mazes per sampling call (and per evaluation generator)


@dataclass
class Phase:
    """The outcome of :func:`train_sft` or :func:`train_rl`: the model, one metrics dict per
    step (None when the phase was interrupted) and the seconds it took (all sessions)."""

    model: MazeTransformer
    metrics: list[dict] | None
    seconds: float


def make_generator(device: str | torch.device, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator


def _run_phase(
    folder: Path,
    model: MazeTransformer,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step_fn: Callable[[int], dict],
    config: MazeConfig,
    total_steps: int,
    description: str,
    progress: bool,
    stop_after: int | None,
) -> Phase:
    """Run ``step_fn(step) -> metrics`` for the steps not yet done, checkpointing; resume from
    ``folder/checkpoint.pt`` when it exists. ``stop_after``: stop after that many steps of this
    call, as an interruption would (for tests)."""
    checkpoint = folder / "checkpoint.pt"
    metrics: list[dict] = []
    start, seconds = 0, 0.0
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, config.device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"].cpu())
        metrics, start, seconds = state["metrics"], state["step"], state.get("seconds", 0.0)
    began = time.perf_counter()

    def save(step: int) -> None:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "metrics": metrics,
            "step": step,
            "seconds": seconds + time.perf_counter() - began,
        }
        save_checkpoint(state, checkpoint)

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
            return Phase(model, None, seconds + time.perf_counter() - began)
        metrics.append(step_fn(step))
        bar.update(1)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps:
            save(step + 1)
    bar.close()
    if start == total_steps == 0:
        save(0)
    return Phase(model, metrics, seconds + time.perf_counter() - began)


def _optimizer(model: MazeTransformer, lr: float, config: MazeConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)


def _clip_and_step(model, optimizer, loss: torch.Tensor, config: MazeConfig) -> float:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    return grad_norm.item()


# -------------------------------------------------------------------------------------- SFT
def train_sft(
    config: MazeConfig,
    seed: int,
    pool: MazeBatchData,
    folder: Path,
    progress: bool = False,
    stop_after: int | None = None,
) -> Phase:
    r"""Supervised warm start on BFS paths: minimise the mean token cross-entropy
    :math:`-\frac{1}{\#\mathrm{tokens}}\sum \log\pi(z^*_t\mid x, z^*_{<t})` of the shortest
    path plus DONE over ``config.sft_steps`` batches of ``config.sft_batch`` pool mazes."""
    seed_everything(seed)
    model = MazeTransformer(config.model_config()).to(config.device)
    optimizer = _optimizer(model, config.sft_lr, config)
    generator = make_generator(config.device, seed)

    def step_fn(step: int) -> dict:
        rows = batch_indices(seed, PHASE_SFT, step, config.sft_batch, len(pool))
        index = torch.as_tensor(rows, device=config.device)
        mask = pool.mask[index].float()
        logp = token_logprobs(model, pool.prompts[index], pool.answers[index], config.autocast)
        loss = -(logp * mask).sum() / mask.sum()
        grad_norm = _clip_and_step(model, optimizer, loss, config)
        return {"loss": loss.item(), "grad_norm": grad_norm}

    return _run_phase(
        Path(folder),
        model,
        optimizer,
        generator,
        step_fn,
        config,
        config.sft_steps,
        f"SFT seed {seed}",
        progress,
        stop_after,
    )


# --------------------------------------------------------------------------------------- RL
def verify_rollouts(data: MazeBatchData, index: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    r"""Rewards ``(P, N)``: ``rewards[p, i] = verify(data.mazes[index[p]], tokens[p, i])``.

    ``tokens`` ``(P, N, L)`` holds N answers for each of the P mazes ``index`` ``(P,)``.
    """
    num_prompts, num_samples = tokens.shape[:2]
    if index.shape != (num_prompts,):
        raise ValueError(
            f"verify_rollouts: index must have shape ({num_prompts},), got {tuple(index.shape)}"
        )

    def per_answer(t: torch.Tensor) -> torch.Tensor:  # maze p's row repeated for its N answers
        return t[index].repeat_interleave(num_samples, 0)

    flat = tokens.reshape(num_prompts * num_samples, -1)  # (P*N, L)
    rewards = verify_batch(
        per_answer(data.open), per_answer(data.start), per_answer(data.goal), flat
    )
    return rewards.view(num_prompts, num_samples)  # (P, N)


def sample_and_verify(
    model: MazeTransformer,
    data: MazeBatchData,
    index: torch.Tensor,
    num_samples: int,
    generator: torch.Generator,
    config: MazeConfig,
) -> tuple[Rollouts, torch.Tensor]:
    """``N = num_samples`` answers at temperature 1 for each maze of ``index`` (P of them), and
    their 0/1 rewards ``(P, N)``."""
    rollouts = sample(
        model,
        data.prompts[index],
        num_samples,
        max_answer_length(config.cells),
        temperature=1.0,
        generator=generator,
        autocast=config.autocast,
    )
    return rollouts, verify_rollouts(data, index, rollouts.tokens)


def rl_loss(logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""The token-mean surrogate, with :math:`m` the mask of generated tokens,

    .. math:: L = -\frac{1}{\sum m}\sum_{x,i,t} m_{x,i,t}\,A_{x,i}\,\log\pi(z_{x,i,t}\mid\cdot),

    with ``logprobs`` and ``mask`` ``(P, N, L)`` and ``advantages`` ``(P, N)``, the paper's
    aggregation (:func:`companion.estimators.policy_gradient_loss`, ``"token_mean"``)."""
    return policy_gradient_loss(logprobs, advantages, mask, aggregation="token_mean")


def rl_step(
    model: MazeTransformer,
    optimizer: torch.optim.Optimizer,
    method: str,
    data: MazeBatchData,
    index: torch.Tensor,
    generator: torch.Generator,
    config: MazeConfig,
) -> dict:
    r"""One fully on-policy step: sample N answers for each of the P mazes ``index`` at
    temperature 1, score them with the verifier, turn rewards ``(P, N)`` into advantages with
    ``ADVANTAGES[method]`` and take one optimizer step on :func:`rl_loss`."""
    num_prompts, num_samples = index.shape[0], config.num_samples
    rollouts, rewards = sample_and_verify(model, data, index, num_samples, generator, config)
    advantages = ADVANTAGES[method](rewards)  # (P, N)
    flat_tokens = rollouts.tokens.reshape(num_prompts * num_samples, -1)  # (P*N, L)
    logp = token_logprobs(model, data.prompts[index], flat_tokens, config.autocast)
    loss = rl_loss(logp.view(num_prompts, num_samples, -1), advantages, rollouts.mask)
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
    held_out: MazeBatchData | None = None,
    progress: bool = False,
    stop_after: int | None = None,
) -> Phase:
    """RL from a copy of ``sft_model`` with ``method``: the same mazes at each step for every
    method. Every ``probe_every`` steps the mean reward on the probe set is added to that
    step's metrics (``probe_reward``); with ``eval_every`` and ``held_out``, the per-maze
    correct counts on the held-out mazes (``held_out_correct``) before the last step."""
    if method not in ADVANTAGES:
        raise ValueError(f"train_rl: unknown method {method!r}; known: {sorted(ADVANTAGES)}")
    seed_everything(seed)
    model = copy.deepcopy(sft_model)
    optimizer = _optimizer(model, config.rl_lr, config)
    generator = make_generator(config.device, 1000 + seed)

    def step_fn(step: int) -> dict:
        rl_pool = config.rl_pool or len(pool)  # RL draws from the first rl_pool mazes
        rows = batch_indices(seed, PHASE_RL, step, config.prompts_per_step, rl_pool)
        index = torch.as_tensor(rows, device=config.device)
        metrics = rl_step(model, optimizer, method, pool, index, generator, config)
        done = step + 1
        if config.probe_mazes and config.probe_every and done % config.probe_every == 0:
            metrics["probe_reward"] = probe_reward(model, pool, seed, config)
        due = config.eval_every and done % config.eval_every == 0 and done < config.rl_steps
        if held_out is not None and due:
            counts = evaluate(model, held_out, config.eval_samples, seed, config)
            metrics["held_out_correct"] = counts["correct"]
        return metrics

    return _run_phase(
        Path(folder),
        model,
        optimizer,
        generator,
        step_fn,
        config,
        config.rl_steps,
        f"{method} seed {seed}",
        progress,
        stop_after,
    )


# ------------------------------------------------------------------------------- evaluation
def evaluate(
    model: MazeTransformer,
    data: MazeBatchData,
    num_samples: int,
    seed: int,
    config: MazeConfig,
    purpose: int = STREAM_EVAL,
) -> dict:
    r"""Sample ``n = num_samples`` answers for each maze of ``data`` and count the correct ones.

    Mazes go in blocks of :data:`EVAL_BLOCK`, block ``b`` with its own generator seeded by
    ``(seed, purpose, b)``: the counts of the first mazes do not depend on how many mazes
    follow, and every model of a seed is evaluated with the same random numbers. Returns
    ``{"num_samples": n, "correct": [c per maze], "frac_done", "mean_length"}``; pass@k is
    :func:`companion.passk.estimate_pass_at_k` of ``(n, c, k)``.
    """
    correct, ended, lengths = [], [], []
    for block, begin in enumerate(range(0, len(data), EVAL_BLOCK)):
        index = torch.arange(begin, min(begin + EVAL_BLOCK, len(data)), device=data.prompts.device)
        generator = make_generator(config.device, stream_seed(seed, purpose, block))
        rollouts, rewards = sample_and_verify(model, data, index, num_samples, generator, config)
        correct.append(rewards.sum(1).long().cpu())
        ended.append((rollouts.tokens == DONE).any(dim=-1).float().flatten().cpu())
        lengths.append(rollouts.mask.sum(-1).float().flatten().cpu())
    return {
        "num_samples": num_samples,
        "correct": torch.cat(correct).tolist(),
        "frac_done": float(torch.cat(ended).mean()),
        "mean_length": float(torch.cat(lengths).mean()),
    }


def probe_reward(
    model: MazeTransformer, pool: MazeBatchData, seed: int, config: MazeConfig
) -> float:
    """Mean reward of ``probe_samples`` answers on each of the first ``probe_mazes`` training
    mazes: a fixed probe set, sampled with the same random numbers at every step, so that the
    curve moves only when the model does, not with the mazes a step happens to draw."""
    probe = pool.subset(config.probe_mazes)
    counts = evaluate(model, probe, config.probe_samples, seed, config, STREAM_PROBE)
    return sum(counts["correct"]) / (config.probe_samples * config.probe_mazes)
