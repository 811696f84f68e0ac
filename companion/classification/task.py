r"""The task: a tempered linear teacher over C classes, its data, the student, labels as rollouts.

=====================  ============  ========================================================
symbol                 shape         meaning
=====================  ============  ========================================================
``teacher``            ``(D, C)``    unit column :math:`v_c` per class
``inputs``             ``(M, D)``    features :math:`x \sim \mathcal N(0, I_D)`
``labels``             ``(M,)``      :math:`y \sim \mathrm{softmax}(x^\top V/\tau)`, int64
``logits``             ``(P, C)``    student logits :math:`W^\top x + b`
``samples``            ``(P, N)``    labels drawn from :math:`\mathrm{softmax}(\text{logits})`
``rewards``            ``(P, N)``    ``samples == labels[:, None]`` as floats
``log_pass_rate``      ``(M,)``      :math:`\log p = \log\pi_\theta(y \mid x)`, float64
=====================  ============  ========================================================

Derived in: chapter 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from companion.classification.config import ClassificationConfig
from companion.objectives import pass_at_k

#: Stream names of :func:`derive_seed`: each random stream has its own seed.
STREAMS: tuple[str, ...] = ("teacher", "data", "init", "batches", "samples")


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for one named random stream of ``seed`` (NumPy's ``SeedSequence``).

    Distinct ``(seed, stream)`` pairs give unrelated generators, so the task seed and the
    training seed never share a stream even when they are equal numbers.
    """
    if stream not in STREAMS:
        raise ValueError(f"derive_seed: unknown stream {stream!r}; expected one of {STREAMS}")
    entropy = [int(seed), STREAMS.index(stream)]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed`."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream))


@dataclass(frozen=True)
class ClassificationTask:
    """The teacher and the train and validation data (tensors on one device).

    ==========================  ================  ==================================
    field                       shape             meaning
    ==========================  ================  ==================================
    ``teacher``                 ``(D, C)``        unit column per class
    ``train_inputs``            ``(n_train, D)``  training features
    ``train_labels``            ``(n_train,)``    training labels (int64)
    ``validation_inputs``       ``(n_val, D)``    held-out features
    ``validation_labels``       ``(n_val,)``      held-out labels (int64)
    ==========================  ================  ==================================
    """

    teacher: torch.Tensor
    label_temperature: float
    train_inputs: torch.Tensor
    train_labels: torch.Tensor
    validation_inputs: torch.Tensor
    validation_labels: torch.Tensor

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return self.teacher.shape[1]


def teacher_probabilities(
    inputs: torch.Tensor, teacher: torch.Tensor, temperature: float
) -> torch.Tensor:
    r"""The label distribution :math:`q(\cdot \mid x) = \mathrm{softmax}(x^\top V / \tau)`.

    Shapes: inputs (M, D), teacher (D, C) -> (M, C), rows summing to 1.

    Derived in: chapter 8.
    """
    if inputs.ndim != 2 or teacher.ndim != 2 or inputs.shape[1] != teacher.shape[0]:
        raise ValueError(
            f"teacher_probabilities: expected inputs (M, D) and teacher (D, C), got "
            f"{tuple(inputs.shape)} and {tuple(teacher.shape)}"
        )
    return torch.softmax(inputs @ teacher / temperature, dim=1)


def make_task(
    config: ClassificationConfig, device: torch.device | str = "cpu"
) -> ClassificationTask:
    r"""Generate the teacher and the data from ``config.task_seed`` (on the CPU, then moved).

    The teacher's columns are independent uniform unit vectors, so no class is favoured; each
    label is one draw from :func:`teacher_probabilities`. The validation set is drawn after
    the training set from the same stream.

    Derived in: chapter 8.
    """
    d, c = config.input_dim, config.num_classes
    teacher = torch.randn(d, c, generator=generator(config.task_seed, "teacher"))
    teacher = teacher / teacher.norm(dim=0, keepdim=True)  # (D, C)
    data = generator(config.task_seed, "data")
    splits = []
    for size in (config.train_size, config.validation_size):
        inputs = torch.randn(size, d, generator=data)  # (M, D)
        labels = torch.empty(size, dtype=torch.int64)
        for start in range(0, size, 8192):  # bounded memory: (8192, C) probabilities at a time
            chunk = teacher_probabilities(
                inputs[start : start + 8192], teacher, config.label_temperature
            )
            labels[start : start + 8192] = torch.multinomial(chunk, 1, generator=data)[:, 0]
        splits += [inputs.to(device), labels.to(device)]
    return ClassificationTask(teacher.to(device), config.label_temperature, *splits)


def make_student(config: ClassificationConfig, device: torch.device | str = "cpu") -> nn.Linear:
    """The student ``nn.Linear(D, C)`` with PyTorch's default initialisation from ``train_seed``.

    Weights and bias are uniform on :math:`\\pm 1/\\sqrt D`, so the initial logits have a
    standard deviation near 0.6 and the pass rate starts near :math:`1/C`. Built on the CPU
    then moved, so the initial weights do not depend on the device.

    Shapes: the module maps inputs (P, D) to logits :math:`W^\\top x + b`, (P, C).

    Derived in: chapter 8.
    """
    model = nn.Linear(config.input_dim, config.num_classes)
    bound = 1 / config.input_dim**0.5
    init = generator(config.train_seed, "init")
    with torch.no_grad():
        model.weight.uniform_(-bound, bound, generator=init)
        model.bias.uniform_(-bound, bound, generator=init)
    return model.to(device)


def sample_labels(
    logits: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Draw ``num_samples`` labels per row from ``softmax(logits)``, with replacement.

    ``logits`` (P, C) -> samples (P, N), int64, on the logits' device; ``generator`` lives
    on the same device. Each row is a policy's rollouts :math:`z_i \sim \pi_\theta(\cdot\mid x)`.

    Derived in: chapter 8.
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


def log_pass_rates(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p_x = \log \mathrm{softmax}(\text{logits}_x)_{y_x}` in float64 (finite).

    Shapes: logits (M, C), labels (M,) -> (M,) float64.

    Derived in: chapter 8.
    """
    log_probs = torch.log_softmax(logits.detach().double(), dim=1)  # (M, C)
    return log_probs.gather(1, labels[:, None]).squeeze(1)


def per_example_pass_at_k(log_pass_rate: torch.Tensor, k: int) -> torch.Tensor:
    r"""pass@k of every example, :math:`1 - (1 - p_x)^k`, exact since :math:`p_x` is known.

    Shapes: (M,) -> (M,). Derived in: chapter 8 (pass@k: chapter 2).
    """
    return pass_at_k(log_pass_rate.exp(), k)


def metrics_from_log_pass_rates(
    log_pass_rate: torch.Tensor, ks: tuple[int, ...]
) -> dict[str, float]:
    r"""Validation NLL, pass@1 and pass@k averaged over the examples.

    .. math:: \mathrm{NLL} = -\operatorname{mean}_x \log p_x,\quad
              \mathrm{pass@}1 = \operatorname{mean}_x p_x,\quad
              \mathrm{pass@}k = \operatorname{mean}_x \bigl(1 - (1 - p_x)^k\bigr)

    Returns ``{"nll": ..., "pass@1": ..., "pass@16": ...}`` as Python floats.

    Derived in: chapter 8.
    """
    metrics = {"nll": float(-log_pass_rate.mean()), "pass@1": float(log_pass_rate.exp().mean())}
    for k in ks:
        metrics[f"pass@{k}"] = float(per_example_pass_at_k(log_pass_rate, k).mean())
    return metrics


@torch.no_grad()
def teacher_metrics(task: ClassificationTask, ks: tuple[int, ...]) -> dict[str, float]:
    r"""The validation metrics of the teacher :math:`q(\cdot\mid x)` itself.

    Its NLL, :math:`-\operatorname{mean}_x \log q(y_x \mid x)`, estimates the conditional
    entropy of the labels: the lowest expected NLL any student can reach.

    Derived in: chapter 8.
    """
    probs = teacher_probabilities(
        task.validation_inputs.double(), task.teacher.double(), task.label_temperature
    )
    log_pass_rate = probs.gather(1, task.validation_labels[:, None]).squeeze(1).log()
    return metrics_from_log_pass_rates(log_pass_rate, ks)
