r"""Classification as a sampling task: MaxRL approaches cross-entropy as N grows.

A student network over :math:`C` classes is a policy :math:`\pi_\theta(y \mid x)`. A "rollout"
is a label sampled from its softmax, with reward 1 exactly when the sampled label is the true one,
so the pass rate of an example is :math:`p = \pi_\theta(y^\star \mid x)` and the exact
maximum-likelihood objective :math:`\log p` is minus the cross-entropy. Every policy-gradient
method sees only the sampled labels and their rewards; cross-entropy sees the true label.

=====================  ============  ========================================================
symbol                 shape         meaning
=====================  ============  ========================================================
``inputs``             ``(P, D)``    features :math:`x \sim \mathcal N(0, I_D)`
``labels``             ``(P,)``      true class :math:`y^\star` (the teacher's argmax)
``logits``             ``(P, C)``    student logits :math:`\theta(x)`
``samples``            ``(P, N)``    labels drawn from :math:`\mathrm{softmax}(\theta(x))`
``rewards``            ``(P, N)``    ``samples == labels[:, None]`` as floats
``advantages``         ``(P, N)``    :data:`companion.estimators.ADVANTAGES` of the rewards
``pass_rate``          ``(P,)``      :math:`p = \pi_\theta(y^\star \mid x)`
=====================  ============  ========================================================

The task is generated in code: a fixed random teacher MLP labels Gaussian inputs, so the
initial pass rate of an untrained student is about :math:`1/C`. Run it with
``python -m companion.classification --help``.

Derived in: chapter 8.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from companion.estimators import ADVANTAGES, policy_gradient_loss
from companion.objectives import pass_at_k
from companion.runtime import atomic_write, default_device, scale_name

#: Training methods: exact maximum likelihood and the sampled-label policy gradients.
METHODS: tuple[str, ...] = ("cross_entropy", "reinforce", "rloo", "grpo", "maxrl")
#: Methods whose estimator needs at least two samples per example.
NEEDS_TWO_SAMPLES: tuple[str, ...] = ("rloo", "grpo", "maxrl")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
#: Learning rate used when the config leaves it unset.
DEFAULT_LEARNING_RATES: dict[str, float] = {"sgd": 0.1, "adam": 1e-3}
#: Display names used in labels and legends.
METHOD_NAMES: dict[str, str] = {
    "cross_entropy": "cross-entropy",
    "reinforce": "REINFORCE",
    "rloo": "RLOO",
    "grpo": "GRPO",
    "maxrl": "MaxRL",
}


class NonFiniteTrainingError(FloatingPointError):
    """Raised when a loss or a parameter becomes NaN or infinite during training."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _require_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"ClassificationConfig.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"ClassificationConfig.{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class ClassificationConfig:
    r"""Everything that defines one classification-as-sampling experiment.

    The task: :math:`x \sim \mathcal N(0, I_D)` with ``D = input_dim``; a random teacher MLP
    ``D -> teacher_hidden -> num_classes`` whose class scores are standardised so that the
    classes are about equally frequent; label = argmax. The student is an MLP
    ``D -> student_hidden -> num_classes``. Every method trains for ``steps`` steps on
    minibatches of ``batch_size`` training examples drawn with the same seed, with the same
    optimizer and learning rate.

    Use :meth:`cpu`, :meth:`gpu` or :meth:`for_device` for the book's two scales and
    :func:`dataclasses.replace` to change a field; invalid values raise ``ValueError`` or
    ``TypeError`` at construction.

    Derived in: chapter 8.
    """

    input_dim: int = 32
    teacher_hidden: int = 128
    num_classes: int = 100
    student_hidden: int = 256
    train_size: int = 50_000
    validation_size: int = 2_000
    batch_size: int = 128
    steps: int = 600
    optimizer: str = "sgd"
    learning_rate: float | None = None
    eval_every: int = 50
    pass_at_ks: tuple[int, ...] = (16, 128)
    seed: int = 0
    scale: str = "cpu"

    def __post_init__(self) -> None:
        for name, minimum in [
            ("input_dim", 1),
            ("teacher_hidden", 1),
            ("num_classes", 2),
            ("student_hidden", 1),
            ("train_size", 1),
            ("validation_size", 1),
            ("batch_size", 1),
            ("steps", 1),
            ("eval_every", 1),
            ("seed", 0),
        ]:
            _require_int(getattr(self, name), name, minimum)
        if self.batch_size > self.train_size:
            raise ValueError(
                f"ClassificationConfig.batch_size ({self.batch_size}) must not exceed "
                f"train_size ({self.train_size})"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"ClassificationConfig.optimizer must be one of {OPTIMIZERS}, "
                f"got {self.optimizer!r}"
            )
        if self.learning_rate is not None and not (
            isinstance(self.learning_rate, (int, float))
            and math.isfinite(self.learning_rate)
            and self.learning_rate > 0
        ):
            raise ValueError(
                f"ClassificationConfig.learning_rate must be a finite number > 0 or None "
                f"(the optimizer's default), got {self.learning_rate!r}"
            )
        if not isinstance(self.pass_at_ks, tuple) or not self.pass_at_ks:
            raise TypeError(
                f"ClassificationConfig.pass_at_ks must be a non-empty tuple of ints, "
                f"got {self.pass_at_ks!r}"
            )
        for k in self.pass_at_ks:
            _require_int(k, "pass_at_ks[...]", 1)
        if self.scale not in ("cpu", "gpu", "custom"):
            raise ValueError(
                f"ClassificationConfig.scale must be 'cpu', 'gpu' or 'custom', got {self.scale!r}"
            )

    @property
    def lr(self) -> float:
        """The learning rate in use: ``learning_rate`` or the optimizer's default."""
        if self.learning_rate is None:
            return DEFAULT_LEARNING_RATES[self.optimizer]
        return float(self.learning_rate)

    @classmethod
    def cpu(cls, **overrides) -> ClassificationConfig:
        """The CPU scale: the whole chapter runs in about two minutes on 2 cores."""
        return cls(**{"scale": "cpu", **overrides})

    @classmethod
    def gpu(cls, **overrides) -> ClassificationConfig:
        """The GPU scale: 4x the batch, 10x the data and the validation set, finer evaluation.

        The number of steps and the learning rate stay those of :meth:`cpu`, so both scales
        stop in the same regime (most examples still hard, where the chapter's claims are made).
        """
        values = {
            "scale": "gpu",
            "train_size": 500_000,
            "validation_size": 20_000,
            "batch_size": 512,
            "eval_every": 25,
        }
        return cls(**{**values, **overrides})

    @classmethod
    def for_device(cls, device: torch.device | str, **overrides) -> ClassificationConfig:
        """:meth:`gpu` on CUDA, :meth:`cpu` otherwise (see :func:`companion.runtime.scale_name`)."""
        if scale_name(torch.device(device)) == "gpu":
            return cls.gpu(**overrides)
        return cls.cpu(**overrides)


def check_method(method: str, num_samples: int | None) -> int:
    """Validate a (method, N) pair and return N (1 for cross-entropy, which samples nothing)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if method == "cross_entropy":
        return 1
    if isinstance(num_samples, bool) or not isinstance(num_samples, int):
        raise TypeError(
            f"{method} needs the number of sampled labels per example N as an int, "
            f"got {num_samples!r}"
        )
    minimum = 2 if method in NEEDS_TWO_SAMPLES else 1
    if num_samples < minimum:
        raise ValueError(
            f"{method} needs N >= {minimum} sampled labels per example, got N = {num_samples}"
        )
    return num_samples


def run_label(method: str, num_samples: int | None) -> str:
    """Human-readable name of a run, e.g. ``"MaxRL N=1024"`` or ``"cross-entropy"``."""
    if method == "cross_entropy":
        return METHOD_NAMES[method]
    return f"{METHOD_NAMES[method]} N={num_samples}"


# --------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationTask:
    """Train and validation data of the synthetic task (tensors on one device).

    ==========================  ================  ==================================
    field                       shape             meaning
    ==========================  ================  ==================================
    ``train_inputs``            ``(n_train, D)``  training features
    ``train_labels``            ``(n_train,)``    training labels (int64)
    ``validation_inputs``       ``(n_val, D)``    held-out features
    ``validation_labels``       ``(n_val,)``      held-out labels (int64)
    ==========================  ================  ==================================
    """

    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    validation_inputs: torch.Tensor
    validation_labels: torch.Tensor
    num_classes: int


def make_task(config: ClassificationConfig, device: torch.device | str = "cpu"):
    r"""Generate the task from ``config.seed`` (on the CPU, so every device gets the same data).

    Teacher scores :math:`s(x) = W_2^\top \mathrm{relu}(W_1^\top x)` with Gaussian weights,
    standardised per class over a reference sample (so no class dominates); the label is
    :math:`\arg\max_c s_c(x)`.

    Returns
    -------
    ClassificationTask with tensors on ``device``.

    Derived in: chapter 8.
    """
    generator = torch.Generator().manual_seed(config.seed)
    d, h, c = config.input_dim, config.teacher_hidden, config.num_classes
    first = torch.randn(d, h, generator=generator) / math.sqrt(d)  # (D, H)
    second = torch.randn(h, c, generator=generator) / math.sqrt(h)  # (H, C)

    def scores(x: torch.Tensor) -> torch.Tensor:  # (M, D) -> (M, C)
        return torch.relu(x @ first) @ second

    reference = scores(torch.randn(20_000, d, generator=generator))
    mean, std = reference.mean(0), reference.std(0)
    total = config.train_size + config.validation_size
    inputs = torch.randn(total, d, generator=generator)  # (n_train + n_val, D)
    labels = ((scores(inputs) - mean) / std).argmax(dim=1)  # (n_train + n_val,)
    n_train = config.train_size
    device = torch.device(device)
    return ClassificationTask(
        train_inputs=inputs[:n_train].to(device),
        train_labels=labels[:n_train].to(device),
        validation_inputs=inputs[n_train:].to(device),
        validation_labels=labels[n_train:].to(device),
        num_classes=c,
    )


def make_student(config: ClassificationConfig, device: torch.device | str = "cpu") -> nn.Module:
    """The student MLP ``D -> student_hidden -> C``, initialised from ``config.seed``.

    PyTorch's default initialisation gives small logits, so the untrained student is close to
    uniform and its pass rate is about ``1/C``. Built on the CPU then moved, so the initial
    weights do not depend on the device.
    """
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(config.seed + 1)
        model = nn.Sequential(
            nn.Linear(config.input_dim, config.student_hidden),
            nn.ReLU(),
            nn.Linear(config.student_hidden, config.num_classes),
        )
    finally:
        torch.random.set_rng_state(state)
    return model.to(device)


# --------------------------------------------------------------------------------------------
# Rollouts, rewards and the loss of one step
# --------------------------------------------------------------------------------------------


def sample_labels(
    logits: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``num_samples`` labels per row from ``softmax(logits)``, with replacement.

    ``logits`` (P, C) -> samples (P, N), int64, on the logits' device. ``generator`` must live
    on the same device.
    """
    if logits.ndim != 2:
        raise ValueError(f"sample_labels: logits must have shape (P, C), got {tuple(logits.shape)}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"sample_labels: num_samples must be an int >= 1, got {num_samples!r}")
    probs = torch.softmax(logits.detach().float(), dim=1)  # (P, C)
    return torch.multinomial(probs, num_samples, replacement=True, generator=generator)


def label_rewards(samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary rewards: ``rewards[x, i] = 1.0`` iff ``samples[x, i] == labels[x]``.

    ``samples`` (P, N) int, ``labels`` (P,) int -> rewards (P, N) float32.

    Derived in: chapter 8.
    """
    if samples.ndim != 2 or labels.ndim != 1 or samples.shape[0] != labels.shape[0]:
        raise ValueError(
            f"label_rewards: expected samples (P, N) and labels (P,), got "
            f"{tuple(samples.shape)} and {tuple(labels.shape)}"
        )
    return (samples == labels[:, None]).float()


@dataclass
class StepOutput:
    """What one training step computed (all tensors detached except ``loss``)."""

    loss: torch.Tensor  # scalar, with grad
    pass_rate: torch.Tensor  # (P,) probability of the true label
    samples: torch.Tensor | None  # (P, N) sampled labels, None for cross-entropy
    rewards: torch.Tensor | None  # (P, N), None for cross-entropy
    advantages: torch.Tensor | None  # (P, N), None for cross-entropy


def step_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    method: str,
    num_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> StepOutput:
    r"""The surrogate loss of one minibatch for one method.

    Cross-entropy: :math:`L = -\frac1P\sum_x \log\pi_\theta(y^\star_x \mid x)`.
    Policy gradients: sample ``N`` labels per example, rewards ``samples == labels``,
    ``advantages = ADVANTAGES[method](rewards)`` and
    ``policy_gradient_loss(log pi(samples), advantages)``, i.e.
    :math:`L = -\frac{1}{PN}\sum_{x,i} A_{x,i}\log\pi_\theta(z_{x,i}\mid x)`.

    Shapes: logits (P, C), labels (P,) -> StepOutput with rewards/advantages (P, N).

    Derived in: chapter 8 (estimators from chapters 5 and 6).
    """
    num_samples = check_method(method, num_samples)
    log_probs = torch.log_softmax(logits, dim=1)  # (P, C)
    true_log_prob = log_probs.gather(1, labels[:, None]).squeeze(1)  # (P,)
    pass_rate = true_log_prob.detach().exp()
    if method == "cross_entropy":
        return StepOutput(-true_log_prob.mean(), pass_rate, None, None, None)
    samples = sample_labels(logits, num_samples, generator)  # (P, N)
    rewards = label_rewards(samples, labels)  # (P, N)
    advantages = ADVANTAGES[method](rewards)  # (P, N)
    sampled_log_probs = log_probs.gather(1, samples)  # (P, N)
    loss = policy_gradient_loss(sampled_log_probs, advantages)
    return StepOutput(loss, pass_rate, samples, rewards, advantages)


def all_fail_advantage_total(rewards: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Sum of ``|A|`` over the groups whose rewards are all zero (a 0-d tensor, no sync).

    Algorithm 1 sets these to exactly zero, so the trainer requires the total to be 0.
    """
    all_fail = rewards.sum(dim=1) == 0  # (P,)
    return (advantages.abs() * all_fail[:, None]).sum()


# --------------------------------------------------------------------------------------------
# Evaluation and expected per-example gradients
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def true_label_probability(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Pass rate of each example, :math:`\\pi_\\theta(y^\\star\\mid x)`, float64 (M,)."""
    log_probs = torch.log_softmax(model(inputs).double(), dim=1)  # (M, C)
    return log_probs.gather(1, labels[:, None]).squeeze(1).exp()


def evaluate(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (16, 128)
) -> dict[str, float]:
    r"""Validation pass@1 and pass@k, exact because the class probabilities are known.

    .. math:: \mathrm{pass@}1 = \operatorname{mean}_x p_x, \qquad
              \mathrm{pass@}k = \operatorname{mean}_x \bigl(1 - (1 - p_x)^k\bigr)

    Returns ``{"pass@1": ..., "pass@16": ..., ...}`` as Python floats.

    Derived in: chapter 8 (pass@k: chapter 2).
    """
    pass_rate = true_label_probability(model, inputs, labels)  # (M,)
    metrics = {"pass@1": float(pass_rate.mean())}
    for k in ks:
        metrics[f"pass@{k}"] = float(pass_at_k(pass_rate, k).mean())
    return metrics


def expected_weight(method: str, num_samples: int | None, pass_rate: torch.Tensor) -> torch.Tensor:
    r"""Weight :math:`c(p)` of a method's expected gradient, :math:`\mathbb E\hat g = c(p)\nabla p`.

    Cross-entropy: :math:`c = 1/p`. For a group estimator with binary rewards, symmetry over
    the samples and conditioning on the first sample's reward give

    .. math:: c_N(p) = \mathbb E\bigl[A_1 \mid r_1 = 1\bigr] - \mathbb E\bigl[A_1 \mid r_1 = 0\bigr]
              = \sum_{j=0}^{N-1} \binom{N-1}{j} p^j (1-p)^{N-1-j}
                \bigl(A(1; j) - A(0; j)\bigr),

    where :math:`A(r; j)` is the advantage of a sample with reward ``r`` whose ``N - 1``
    companions hold ``j`` successes, computed here by calling ``ADVANTAGES[method]``. For
    Algorithm 1 this equals :math:`(1 - (1-p)^{N-1})/p`, for REINFORCE and RLOO it is 1.

    Shapes: pass_rate (M,) float -> (M,) float64 on the same device.

    Derived in: chapter 8 (the weight functions of chapter 3).
    """
    num_samples = check_method(method, num_samples)
    p = pass_rate.double()
    if method == "cross_entropy":
        if bool((p <= 0).any()):
            raise ValueError("expected_weight('cross_entropy'): 1/p is infinite at p = 0")
        return 1.0 / p
    n = num_samples
    companions = torch.arange(n, device=p.device, dtype=torch.float64)  # j = 0..N-1
    # Row j: the first sample's reward, then j successes and N-1-j failures.
    others = (torch.arange(n - 1, device=p.device)[None, :] < companions[:, None]).double()
    success_first = torch.cat([torch.ones(n, 1, dtype=torch.float64, device=p.device), others], 1)
    failure_first = torch.cat([torch.zeros(n, 1, dtype=torch.float64, device=p.device), others], 1)
    advantage = ADVANTAGES[method]
    difference = advantage(success_first)[:, 0] - advantage(failure_first)[:, 0]  # (N,)
    log_binomial = (
        torch.lgamma(torch.tensor(float(n), dtype=torch.float64, device=p.device))
        - torch.lgamma(companions + 1)
        - torch.lgamma(n - companions)
    )  # (N,)
    log_pmf = (
        log_binomial[None, :]
        + torch.special.xlogy(companions[None, :], p[:, None])
        + torch.special.xlogy(n - 1 - companions[None, :], 1 - p[:, None])
    )  # (M, N)
    return (log_pmf.exp() * difference[None, :]).sum(1)


@torch.no_grad()
def expected_gradient_norms(
    logits: torch.Tensor, labels: torch.Tensor, method: str, num_samples: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Per-example norm of a method's expected gradient w.r.t. the logits, and the pass rate.

    With :math:`\nabla_\theta p = p\,(e_{y^\star} - \pi)` and :math:`c(p)` from
    :func:`expected_weight`: :math:`\|\mathbb E\hat g_x\| = |c(p)|\, p\, \|e_{y^\star}-\pi\|`.
    For cross-entropy this is :math:`\|\nabla_\theta \log p\| = \|e_{y^\star} - \pi\|`.

    Shapes: logits (M, C), labels (M,) -> (pass_rate (M,), norm (M,)), float64.

    Derived in: chapter 8.
    """
    probs = torch.softmax(logits.double(), dim=1)  # (M, C)
    pass_rate = probs.gather(1, labels[:, None]).squeeze(1)  # (M,)
    score = -probs
    score[torch.arange(len(labels), device=labels.device), labels] += 1.0  # e_y - pi, (M, C)
    score_norm = score.norm(dim=1)  # (M,)
    if method == "cross_entropy":
        return pass_rate, score_norm
    weight = expected_weight(method, num_samples, pass_rate)
    return pass_rate, weight.abs() * pass_rate * score_norm


def binned_mean(
    pass_rate: torch.Tensor, values: torch.Tensor, edges: torch.Tensor
) -> tuple[list[float | None], list[int]]:
    """Mean of ``values`` within each pass-rate bin ``[edges[b], edges[b+1])``.

    Pass rates below the first edge go to the first bin, at or above the last to the last.
    Returns (means with ``None`` for empty bins, counts), as Python lists of length B.
    """
    edges = edges.to(pass_rate.device, torch.float64)
    index = torch.bucketize(pass_rate, edges[1:-1], right=True)  # (M,) in 0..B-1
    num_bins = len(edges) - 1
    sums = torch.zeros(num_bins, dtype=torch.float64, device=values.device)
    counts = torch.zeros(num_bins, dtype=torch.float64, device=values.device)
    sums.index_add_(0, index, values.double())
    counts.index_add_(0, index, torch.ones_like(values, dtype=torch.float64))
    means = [
        float(s / c) if c > 0 else None for s, c in zip(sums.tolist(), counts.tolist(), strict=True)
    ]
    return means, [int(c) for c in counts.tolist()]


#: Pass-rate bins of the gradient-norm figure: 16 per decade-quarter from 1e-4 to 1.
GRADIENT_BIN_EDGES = torch.logspace(-4, 0, 17, dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """History and final numbers of one (method, N) run; JSON-serialisable via ``asdict``."""

    method: str
    num_samples: int | None
    label: str
    optimizer: str
    learning_rate: float
    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    train_pass_rate: list[float | None] = field(default_factory=list)
    all_fail_fraction: list[float | None] = field(default_factory=list)
    train_seconds: float = 0.0
    rollouts_per_second: float = 0.0
    all_fail_advantage_total: float = 0.0

    def final(self, metric: str = "pass@1") -> float:
        """Last recorded value of a validation metric."""
        return self.metrics[metric][-1]


def _make_optimizer(config: ClassificationConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr)
    return torch.optim.Adam(model.parameters(), lr=config.lr)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


def train(
    config: ClassificationConfig,
    method: str,
    num_samples: int | None = None,
    *,
    device: torch.device | str | None = None,
    task: ClassificationTask | None = None,
    progress: bool = True,
) -> tuple[RunResult, nn.Module]:
    """Train the student with one method for ``config.steps`` steps.

    The minibatch order, the initial weights and the label-sampling stream are all seeded
    by ``config.seed``, so two methods see the same examples in the same order. The validation
    metrics are recorded at step 0, every ``config.eval_every`` steps and at the end.

    Raises
    ------
    NonFiniteTrainingError
        A loss or parameter became NaN/inf (checked at every evaluation).
    AssertionError
        Algorithm 1 (``method="maxrl"``) gave a non-zero advantage to a group whose samples
        all failed (it must contribute exactly zero).

    Returns
    -------
    (RunResult, the trained model)

    Derived in: chapter 8.
    """
    num_samples = check_method(method, num_samples)
    device = torch.device(device) if device is not None else default_device()
    task = task if task is not None else make_task(config, device)
    if task.train_inputs.device.type != device.type:
        raise ValueError(f"task tensors are on {task.train_inputs.device}, training on {device}")
    label = run_label(method, num_samples)
    model = make_student(config, device)
    optimizer = _make_optimizer(config, model)
    batch_generator = torch.Generator().manual_seed(config.seed + 2)
    sample_generator = torch.Generator(device=device).manual_seed(config.seed + 3)
    ks = config.pass_at_ks
    result = RunResult(
        method=method,
        num_samples=None if method == "cross_entropy" else num_samples,
        label=label,
        optimizer=config.optimizer,
        learning_rate=config.lr,
        metrics={"pass@1": [], **{f"pass@{k}": [] for k in ks}},
    )
    zero = torch.zeros((), device=device)
    loss_finite = torch.ones((), dtype=torch.bool, device=device)
    all_fail_total = zero.clone()
    window_pass_rate, window_all_fail, window_steps = zero.clone(), zero.clone(), 0

    def record(step: int) -> None:
        nonlocal window_pass_rate, window_all_fail, window_steps
        _check_finite(model, loss_finite, label, step)
        if method == "maxrl" and float(all_fail_total) != 0.0:
            raise AssertionError(
                f"{label}: Algorithm 1 gave a non-zero advantage (total |A| = "
                f"{float(all_fail_total):g}) to groups whose samples all failed"
            )
        model.eval()
        metrics = evaluate(model, task.validation_inputs, task.validation_labels, ks)
        model.train()
        result.steps.append(step)
        for name, value in metrics.items():
            result.metrics[name].append(value)
        if window_steps:
            result.train_pass_rate.append(float(window_pass_rate) / window_steps)
            fail = None if method == "cross_entropy" else float(window_all_fail) / window_steps
            result.all_fail_fraction.append(fail)
        else:
            result.train_pass_rate.append(None)
            result.all_fail_fraction.append(None)
        window_pass_rate, window_all_fail, window_steps = zero.clone(), zero.clone(), 0

    record(0)
    train_seconds = 0.0
    bar = _progress_bar(config.steps, label, progress)
    _sync(device)
    start = time.perf_counter()
    for step in range(1, config.steps + 1):
        index = torch.randint(config.train_size, (config.batch_size,), generator=batch_generator)
        index = index.to(device)
        inputs, labels = task.train_inputs[index], task.train_labels[index]  # (P, D), (P,)
        output = step_loss(model(inputs), labels, method, num_samples, sample_generator)
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
        loss_finite &= torch.isfinite(output.loss.detach())
        window_pass_rate += output.pass_rate.mean()
        window_steps += 1
        if output.rewards is not None:
            window_all_fail += (output.rewards.sum(dim=1) == 0).float().mean()
            if method == "maxrl":
                all_fail_total += all_fail_advantage_total(output.rewards, output.advantages)
        bar.update(1)
        if step % config.eval_every == 0 or step == config.steps:
            _sync(device)
            train_seconds += time.perf_counter() - start
            record(step)
            start = time.perf_counter()
    bar.close()
    result.train_seconds = train_seconds
    result.rollouts_per_second = (
        config.steps * config.batch_size * num_samples / max(train_seconds, 1e-9)
    )
    result.all_fail_advantage_total = float(all_fail_total)
    return result, model


def _progress_bar(total: int, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, file=sys.stderr, disable=not enabled, leave=False)


# --------------------------------------------------------------------------------------------
# Experiments, results on disk, figures
# --------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """All runs of one experiment plus the per-example gradient norms on a reference model."""

    config: dict
    device: str
    torch_version: str
    runs: list[RunResult]
    gradient_reference: str
    gradient_bin_edges: list[float]
    gradient_norms: dict[str, dict[str, list]]

    def run(self, method: str, num_samples: int | None = None) -> RunResult:
        """The run of ``method`` (with ``N = num_samples``; ignored for cross-entropy)."""
        for run in self.runs:
            if run.method == method and (
                method == "cross_entropy" or run.num_samples == num_samples
            ):
                return run
        known = [run.label for run in self.runs]
        raise KeyError(f"no run {run_label(method, num_samples)!r}; runs: {known}")

    def table(self) -> list[dict[str, object]]:
        """One row per run: label, final validation metrics, training time and throughput."""
        rows = []
        for run in self.runs:
            row: dict[str, object] = {"run": run.label}
            row.update({name: values[-1] for name, values in run.metrics.items()})
            row["seconds"] = run.train_seconds
            row["rollouts/s"] = run.rollouts_per_second
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        """Plain dict for ``json.dump``."""
        return dataclasses.asdict(self)


def parse_runs(
    methods: Sequence[str], sample_counts: Sequence[int]
) -> list[tuple[str, int | None]]:
    """Every (method, N) pair; cross-entropy appears once with ``N = None``."""
    runs: list[tuple[str, int | None]] = []
    for method in methods:
        if method == "cross_entropy":
            runs.append((method, None))
            continue
        for n in sample_counts:
            check_method(method, n)
            runs.append((method, n))
    if not runs:
        raise ValueError("no runs: name at least one method (and N for the sampled ones)")
    return runs


def run_experiment(
    config: ClassificationConfig,
    runs: Sequence[tuple[str, int | None]],
    *,
    device: torch.device | str | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
) -> ExperimentResult:
    """Train every (method, N) in ``runs`` on the same task with the same config and seeds.

    The expected per-example gradient norm of every run's method (chapter 8's figure) is
    evaluated on one shared model, the cross-entropy run's final student when there is one
    (else the first run's), so the curves differ only by the methods' weights :math:`c(p)`.
    With ``out``, writes ``results.json`` and the PNG figures there (see :func:`save_results`).

    Derived in: chapter 8.
    """
    runs = [(method, None if method == "cross_entropy" else n) for method, n in runs]
    for method, n in runs:
        check_method(method, n)
    device = torch.device(device) if device is not None else default_device()
    task = make_task(config, device)
    results, models = [], {}
    for method, n in runs:
        run, model = train(config, method, n, device=device, task=task, progress=progress)
        results.append(run)
        models[(method, n)] = model
    reference = ("cross_entropy", None) if ("cross_entropy", None) in models else runs[0]
    with torch.no_grad():
        reference_logits = models[reference](task.validation_inputs)
    norms = {}
    for method, n in runs:
        pass_rate, norm = expected_gradient_norms(
            reference_logits, task.validation_labels, method, n
        )
        means, counts = binned_mean(pass_rate, norm, GRADIENT_BIN_EDGES)
        norms[run_label(method, n)] = {"mean_norm": means, "count": counts}
    experiment = ExperimentResult(
        config=dataclasses.asdict(config),
        device=str(device),
        torch_version=torch.__version__,
        runs=results,
        gradient_reference=run_label(*reference),
        gradient_bin_edges=GRADIENT_BIN_EDGES.tolist(),
        gradient_norms=norms,
    )
    if out is not None:
        save_results(experiment, out)
    return experiment


def save_results(experiment: ExperimentResult, out: str | os.PathLike) -> dict[str, pathlib.Path]:
    """Write ``results.json``, ``pass_at_1.png``, ``pass_at_k.png`` and ``gradient_norm.png``.

    Each file is written to a temporary name in ``out`` and moved into place with
    :func:`os.replace`, so a reader never sees a half-written file. Returns the paths.
    """
    from matplotlib.figure import Figure

    from companion.plotting import book_style

    folder = pathlib.Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"results": folder / "results.json"}
    text = json.dumps(experiment.to_json(), indent=1).encode()
    atomic_write(paths["results"], lambda handle: handle.write(text))
    figures = {
        "pass_at_1": lambda ax: plot_metric(experiment, "pass@1", ax=ax),
        "pass_at_k": lambda ax: plot_metric(experiment, f"pass@{max(_ks(experiment))}", ax=ax),
        "gradient_norm": lambda ax: plot_gradient_norms(experiment, ax=ax),
    }
    with book_style():
        for name, draw in figures.items():
            figure = Figure()  # not registered with pyplot: never shown, no backend needed
            draw(figure.add_subplot())
            figure.tight_layout()
            paths[name] = folder / f"{name}.png"
            atomic_write(paths[name], lambda handle, fig=figure: fig.savefig(handle, format="png"))
    return paths


def _ks(experiment: ExperimentResult) -> list[int]:
    return list(experiment.config["pass_at_ks"])


def _sample_counts(experiment: ExperimentResult, method: str) -> list[int]:
    return [run.num_samples for run in experiment.runs if run.method == method]


def run_style(run_method: str, num_samples: int | None, sample_counts: list[int]) -> dict:
    """Line style of a run: the method's colour, darker as N grows, cross-entropy dashed.

    ``sample_counts`` are the N values of this method in the experiment.

    Cross-entropy is drawn on top (MaxRL at large N lies exactly under it) and RLOO dotted
    (it lies under REINFORCE).
    """
    from companion.plotting import method_color

    style: dict[str, object] = {"color": method_color(run_method)}
    if run_method != "cross_entropy" and len(sample_counts) > 1:
        rank = sorted(sample_counts).index(num_samples)
        style["alpha"] = 0.35 + 0.65 * rank / (len(sample_counts) - 1)
    if run_method == "cross_entropy":
        style.update(linestyle="--", zorder=3)
    if run_method == "rloo":
        style.update(linestyle=":", zorder=3)
    return style


def plot_metric(experiment: ExperimentResult, metric: str = "pass@1", ax=None):
    """Validation ``metric`` against training steps, one line per run. Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    for run in experiment.runs:
        style = run_style(run.method, run.num_samples, _sample_counts(experiment, run.method))
        ax.plot(run.steps, run.metrics[metric], label=run.label, **style)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"{metric} ({experiment.config['optimizer']}, {experiment.config['scale']} scale)")
    ax.legend(fontsize=8)
    return ax


def plot_gradient_norms(experiment: ExperimentResult, ax=None):
    """Expected per-example gradient norm against pass rate (log-log), one line per run."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    edges = experiment.gradient_bin_edges
    centres = [math.sqrt(lo * hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    for run in experiment.runs:
        curve = experiment.gradient_norms[run.label]["mean_norm"]
        points = [(x, y) for x, y in zip(centres, curve, strict=True) if y is not None and y > 0]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        style = run_style(run.method, run.num_samples, _sample_counts(experiment, run.method))
        ax.plot(xs, ys, marker="o", markersize=3, label=run.label, **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("pass rate p of the example")
    ax.set_ylabel("expected gradient norm (w.r.t. logits)")
    ax.set_title(f"per-example gradient on the {experiment.gradient_reference} model")
    ax.legend(fontsize=8)
    return ax


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _method_list(text: str) -> list[str]:
    methods = [item for item in text.split(",") if item]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; choose from {METHODS}")
    return methods


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``python -m companion.classification``."""
    parser = argparse.ArgumentParser(
        prog="python -m companion.classification",
        description="Classification as a sampling task: train a student with cross-entropy and "
        "with sampled-label policy gradients (REINFORCE, RLOO, GRPO, MaxRL) and write "
        "results.json plus PNG figures.",
    )
    parser.add_argument(
        "--scale",
        choices=("cpu", "gpu", "auto"),
        default="auto",
        help="experiment scale; auto = gpu on CUDA, else cpu (default: auto)",
    )
    parser.add_argument(
        "--methods",
        type=_method_list,
        default=list(METHODS),
        help=f"comma-separated subset of {','.join(METHODS)} (default: all)",
    )
    parser.add_argument(
        "--n",
        type=_int_list,
        default=[4, 16, 128, 1024],
        help="comma-separated sampled labels per example N (default: 4,16,128,1024)",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: scale's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of task, init and sampling")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="default: sgd")
    parser.add_argument("--lr", type=float, default=None, help="default: 0.1 (sgd), 1e-3 (adam)")
    parser.add_argument(
        "--out", default="runs/classification", help="run folder (default: runs/classification)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment from the command line; print one line per run."""
    args = build_parser().parse_args(argv)
    device = default_device()
    overrides: dict[str, object] = {"seed": args.seed, "optimizer": args.optimizer}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.lr is not None:
        overrides["learning_rate"] = args.lr
    if args.scale == "auto":
        config = ClassificationConfig.for_device(device, **overrides)
    elif args.scale == "gpu":
        config = ClassificationConfig.gpu(**overrides)
    else:
        config = ClassificationConfig.cpu(**overrides)
    runs = parse_runs(args.methods, args.n)
    experiment = run_experiment(
        config, runs, device=device, out=args.out, progress=not args.no_progress
    )
    print(f"device {device}, scale {config.scale}, {config.optimizer} lr {config.lr:g}")
    for row in experiment.table():
        cells = [f"{row['run']:<18}"]
        cells += [f"{key} {value:.4f}" for key, value in row.items() if key.startswith("pass@")]
        unit = "examples/s" if row["run"] == METHOD_NAMES["cross_entropy"] else "rollouts/s"
        cells.append(f"{row['seconds']:.1f} s, {row['rollouts/s']:.3g} {unit}")
        print("  ".join(cells))
    print(f"wrote {pathlib.Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
