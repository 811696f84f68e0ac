r"""One training run: the loss of a step for each method, the loop, the validation history.

Derived in: chapter 8.
"""

from __future__ import annotations

import base64
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from companion.classification.config import ClassificationConfig
from companion.classification.task import (
    ClassificationTask,
    generator,
    label_rewards,
    log_pass_rates,
    make_student,
    make_task,
    metrics_from_log_pass_rates,
    sample_labels,
)
from companion.estimators import ADVANTAGES, policy_gradient_loss


class NonFiniteTrainingError(FloatingPointError):
    """Raised when a loss or a parameter becomes NaN or infinite during training."""


@dataclass
class StepOutput:
    """What one training step computed (all tensors detached except ``loss``)."""

    loss: torch.Tensor  # scalar, with grad
    pass_rate: torch.Tensor  # (P,) probability of the true label
    rewards: torch.Tensor | None  # (P, N), None for cross-entropy
    advantages: torch.Tensor | None  # (P, N), None for cross-entropy
    samples: torch.Tensor | None = None  # (P, N) sampled labels, None for cross-entropy


def step_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
) -> StepOutput:
    r"""The surrogate loss of one minibatch for one method.

    Cross-entropy: :math:`L = -\frac1P\sum_x \log\pi_\theta(y_x \mid x)`. Policy gradients:
    sample ``N`` labels per example, rewards ``samples == labels``, advantages
    ``ADVANTAGES[method](rewards)`` and
    :math:`L = -\frac{1}{PN}\sum_{x,i} A_{x,i}\log\pi_\theta(z_{x,i}\mid x)`
    (:func:`companion.estimators.policy_gradient_loss`).

    Shapes: logits (P, C), labels (P,) -> StepOutput with rewards/advantages (P, N).

    Derived in: chapter 8 (estimators from chapters 5 and 6).
    """
    if method != "cross_entropy" and method not in ADVANTAGES:
        raise ValueError(f"step_loss: unknown method {method!r}")
    log_probs = torch.log_softmax(logits, dim=1)  # (P, C)
    true_log_prob = log_probs.gather(1, labels[:, None]).squeeze(1)  # (P,)
    pass_rate = true_log_prob.detach().exp()
    if method == "cross_entropy":
        return StepOutput(-true_log_prob.mean(), pass_rate, None, None)
    samples = sample_labels(logits, num_samples, generator)  # (P, N)
    rewards = label_rewards(samples, labels)  # (P, N)
    advantages = ADVANTAGES[method](rewards)  # (P, N)
    loss = policy_gradient_loss(log_probs.gather(1, samples), advantages)
    return StepOutput(loss, pass_rate, rewards, advantages, samples)


def all_fail_advantage_total(rewards: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Sum of ``|A|`` over the groups whose rewards are all zero (a 0-d tensor, no sync).

    Algorithm 1 sets these to exactly zero, so the trainer requires the total to be 0.
    """
    all_fail = rewards.sum(dim=1) == 0  # (P,)
    return (advantages.abs() * all_fail[:, None]).sum()


def encode_floats(values: torch.Tensor) -> str:
    """Base64 of the values as little-endian float32 (compact JSON storage)."""
    return base64.b64encode(values.detach().cpu().numpy().astype("<f4").tobytes()).decode()


def decode_floats(text: str) -> np.ndarray:
    """Inverse of :func:`encode_floats`: a float64 array."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)


@dataclass
class RunResult:
    r"""History and final numbers of one run; JSON-serialisable via :meth:`to_dict`.

    ``metrics[name][i]`` is the validation metric at ``steps[i]`` (``"nll"``, ``"pass@1"``,
    ``"pass@k"``); ``train_pass_rate`` and ``all_fail_fraction`` average the training
    minibatches since the previous evaluation (``None`` at step 0, and ``all_fail_fraction``
    is ``None`` for cross-entropy); ``final_log_pass_rate`` holds :math:`\log p_x` of every
    validation example at the last step (:func:`encode_floats`), and
    ``example_log_pass_rates[str(step)]`` the same at the steps asked for by ``train``'s
    ``keep_examples_at``; ``error`` says why a run
    stopped early (a non-finite loss), empty otherwise.
    """

    config: dict
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    train_pass_rate: list[float | None] = field(default_factory=list)
    all_fail_fraction: list[float | None] = field(default_factory=list)
    final_log_pass_rate: str = ""
    example_log_pass_rates: dict[str, str] = field(default_factory=dict)
    train_seconds: float = 0.0
    rollouts_per_second: float = 0.0
    all_fail_advantage_total: float = 0.0
    error: str = ""
    provenance: dict = field(default_factory=dict)

    def final(self, metric: str = "pass@1") -> float:
        """Last recorded value of a validation metric."""
        return self.metrics[metric][-1]

    def to_dict(self) -> dict:
        """Plain dict for ``json.dump``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**values)


def make_optimizer(config: ClassificationConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD (no momentum) or Adam (PyTorch's defaults) with ``config.learning_rate``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    return torch.optim.Adam(model.parameters(), lr=config.learning_rate)


def _check_finite(model: nn.Module, loss_finite: torch.Tensor, label: str, step: int) -> None:
    if not bool(loss_finite):
        raise NonFiniteTrainingError(
            f"{label}: the loss became NaN or infinite before step {step}; lower the learning "
            "rate or check the inputs"
        )
    for name, parameter in model.named_parameters():
        if not bool(torch.isfinite(parameter).all()):
            raise NonFiniteTrainingError(
                f"{label}: parameter {name} became NaN or infinite before step {step}"
            )


def _progress_bar(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, file=sys.stderr, disable=not enabled, leave=False)


def train(
    config: ClassificationConfig,
    *,
    device: torch.device | str = "cpu",
    task: ClassificationTask | None = None,
    progress: bool = False,
    keep_examples_at: tuple[int, ...] = (),
) -> tuple[RunResult, nn.Module]:
    r"""Train the student with ``config.method`` for ``config.steps`` steps.

    The per-example validation :math:`\log p_x` is kept at the last step and at every
    evaluated step in ``keep_examples_at`` (e.g. where a shorter run of a comparison stops).

    The initial weights, the minibatch order and the label-sampling stream come from
    ``config.train_seed`` (separate streams), so two methods with the same seed see the same
    examples in the same order. Nothing depends on ``config.steps`` except where the loop
    stops, so the history of a shorter run is a prefix of a longer one's.

    Raises
    ------
    NonFiniteTrainingError
        A loss or parameter became NaN/inf (checked at every evaluation).
    AssertionError
        Algorithm 1 (``method="maxrl"``) gave a non-zero advantage to a group whose samples
        all failed (it must contribute exactly zero).

    Derived in: chapter 8.
    """
    device = torch.device(device)
    task = task if task is not None else make_task(config, device)
    if task.train_inputs.device.type != device.type:
        raise ValueError(f"task tensors are on {task.train_inputs.device}, training on {device}")
    if task.num_classes != config.num_classes or task.train_inputs.shape[1] != config.input_dim:
        raise ValueError("train: the task was made for another config (classes or input_dim)")
    method, n, label = config.method, config.num_samples, config.label
    model = make_student(config, device)
    optimizer = make_optimizer(config, model)
    batches = generator(config.train_seed, "batches")
    sampler = generator(config.train_seed, "samples", device)
    ks = config.pass_at_ks
    result = RunResult(config=config.to_dict(), metrics={"nll": [], "pass@1": []})
    result.metrics.update({f"pass@{k}": [] for k in ks})
    zero = torch.zeros((), device=device)
    loss_finite = torch.ones((), dtype=torch.bool, device=device)
    all_fail_total = zero.clone()
    window = {"pass_rate": zero.clone(), "all_fail": zero.clone(), "steps": 0}

    def record(step: int) -> torch.Tensor:
        _check_finite(model, loss_finite, label, step)
        if method == "maxrl" and float(all_fail_total) != 0.0:
            raise AssertionError(
                f"{label}: Algorithm 1 gave a non-zero advantage (total |A| = "
                f"{float(all_fail_total):g}) to groups whose samples all failed"
            )
        with torch.no_grad():
            log_pass_rate = log_pass_rates(model(task.validation_inputs), task.validation_labels)
        result.steps.append(step)
        if step in keep_examples_at:
            result.example_log_pass_rates[str(step)] = encode_floats(log_pass_rate)
        for name, value in metrics_from_log_pass_rates(log_pass_rate, ks).items():
            result.metrics[name].append(value)
        count = window["steps"]
        result.train_pass_rate.append(float(window["pass_rate"]) / count if count else None)
        fail = float(window["all_fail"]) / count if count and method != "cross_entropy" else None
        result.all_fail_fraction.append(fail)
        window.update(pass_rate=zero.clone(), all_fail=zero.clone(), steps=0)
        return log_pass_rate

    log_pass_rate = record(0)
    bar = _progress_bar(config.steps, label, progress)
    _sync(device)
    start, train_seconds = time.perf_counter(), 0.0
    for step in range(1, config.steps + 1):
        index = torch.randint(config.train_size, (config.batch_size,), generator=batches)
        index = index.to(device)
        inputs, labels = task.train_inputs[index], task.train_labels[index]  # (P, D), (P,)
        logits = model(inputs)  # (P, C)
        try:
            output = step_loss(logits, labels, method, n, sampler)
        except RuntimeError as error:  # e.g. multinomial refusing NaN probabilities
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteTrainingError(
                    f"{label}: the logits became NaN or infinite at step {step} (non-finite "
                    "inputs or parameters); lower the learning rate or check the inputs"
                ) from error
            raise
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        loss_finite &= torch.isfinite(output.loss.detach())
        window["pass_rate"] += output.pass_rate.mean()
        window["steps"] += 1
        if output.rewards is not None:
            window["all_fail"] += (output.rewards.sum(dim=1) == 0).float().mean()
            if method == "maxrl":
                all_fail_total += all_fail_advantage_total(output.rewards, output.advantages)
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            _sync(device)
            train_seconds += time.perf_counter() - start
            log_pass_rate = record(step)
            start = time.perf_counter()
    bar.close()
    result.final_log_pass_rate = encode_floats(log_pass_rate)
    result.train_seconds = train_seconds
    result.rollouts_per_second = config.steps * config.batch_size * n / max(train_seconds, 1e-9)
    result.all_fail_advantage_total = float(all_fail_total)
    return result, model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
