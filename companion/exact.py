r"""Exact moments of a gradient estimator for a softmax policy over a few outputs.

A prompt has ``M`` possible outputs with policy :math:`\pi = \mathrm{softmax}(\theta)` and a
success set given by a boolean mask. ``N`` samples :math:`z_1..z_N` are drawn i.i.d.; the
gradient estimate with respect to the logits is

.. math:: \hat g = \frac1N\sum_{i=1}^N A_i\,S_{z_i}, \qquad S_j = \nabla_\theta\log\pi_j
          = e_j - \pi,

with advantages ``A = advantage_fn(rewards)``. Because ``advantage_fn`` is applied to each
group as a whole and is permutation-equivariant, :math:`\hat g` depends only on the counts
:math:`(n_1, \dots, n_M)` of each output, which are multinomial. Enumerating the
:math:`\binom{N+M-1}{M-1}` count vectors (2145 for M = 3, N = 64) instead of the
:math:`M^N` sequences gives the exact mean and covariance. Derived in: chapters 5 and 6.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable

import torch

from companion._checks import check_positive_int

#: Refuse enumerations larger than this many count vectors.
MAX_COMPOSITIONS = 2_000_000


def _check_policy(logits: torch.Tensor, success: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(logits, torch.Tensor) or not isinstance(success, torch.Tensor):
        raise TypeError("logits and success must be torch tensors")
    if logits.ndim != 1 or logits.numel() < 2:
        raise ValueError(
            f"logits must have shape (M,) with M >= 2 outputs, got {tuple(logits.shape)}"
        )
    if success.shape != logits.shape or success.dtype != torch.bool:
        raise ValueError(
            f"success must be a bool tensor of shape {tuple(logits.shape)}, got "
            f"{success.dtype} {tuple(success.shape)}"
        )
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contain NaN or infinite values")
    return logits.detach().double().cpu(), success.cpu()


def pass_rate_and_gradient(
    logits: torch.Tensor, success: torch.Tensor
) -> tuple[float, torch.Tensor]:
    r"""Pass rate :math:`p = \sum_{j \in S}\pi_j` and its gradient w.r.t. the logits.

    .. math:: \frac{\partial p}{\partial\theta_m} = \pi_m\,(\mathbb 1[m \in S] - p)

    Parameters
    ----------
    logits : Tensor (M,)
    success : bool Tensor (M,)

    Returns
    -------
    (p, grad_p) with ``grad_p`` a float64 tensor of shape (M,).

    Derived in: chapter 4.
    """
    logits, success = _check_policy(logits, success)
    probs = torch.softmax(logits, dim=0)
    pass_rate = float(probs[success].sum())
    return pass_rate, probs * (success.double() - pass_rate)


def compositions(total: int, parts: int) -> torch.Tensor:
    """All vectors of ``parts`` non-negative integers summing to ``total``, shape (C, parts)."""
    return _compositions(total, parts).clone()


@functools.lru_cache(maxsize=64)
def _compositions(total: int, parts: int) -> torch.Tensor:
    # Stars and bars: the positions of parts - 1 bars among total + parts - 1 slots.
    rows = []
    for bars in itertools.combinations(range(total + parts - 1), parts - 1):
        edges = (-1, *bars, total + parts - 1)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(parts)])
    return torch.tensor(rows, dtype=torch.long)


def gradient_moments(
    logits: torch.Tensor,
    success: torch.Tensor,
    n_samples: int,
    advantage_fn: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Exact mean and covariance of :math:`\hat g = \frac1N\sum_i A_i S_{z_i}`.

    Parameters
    ----------
    logits : Tensor (M,)
        Logits of the softmax policy over ``M`` outputs.
    success : bool Tensor (M,)
        Which outputs are correct (reward 1).
    n_samples : int
        ``N``, samples per group.
    advantage_fn : callable, rewards (P, N) -> advantages (P, N)
        E.g. an entry of :data:`companion.estimators.ADVANTAGES`; must treat the ``N``
        samples symmetrically (checked).

    Returns
    -------
    mean : float64 Tensor (M,)
        :math:`\mathbb{E}[\hat g]`.
    covariance : float64 Tensor (M, M)
        :math:`\mathrm{Cov}[\hat g]`; its trace is the total variance.

    Derived in: chapter 5 (mean), chapter 6 (covariance).
    """
    logits, success = _check_policy(logits, success)
    n_samples = check_positive_int(n_samples, "n_samples")
    num_outputs = logits.numel()
    count = math.comb(n_samples + num_outputs - 1, num_outputs - 1)
    if count > MAX_COMPOSITIONS:
        raise ValueError(
            f"gradient_moments: {count} count vectors for M = {num_outputs}, "
            f"N = {n_samples}; at most {MAX_COMPOSITIONS} are enumerated"
        )
    counts = _compositions(n_samples, num_outputs)  # (C, M), cached: never modified here
    log_probs = torch.log_softmax(logits, dim=0)
    log_weight = (
        math.lgamma(n_samples + 1)
        - torch.lgamma(counts.double() + 1).sum(1)
        + (counts.double() * log_probs).sum(1)
    )  # (C,)
    weight = torch.exp(log_weight)
    # One canonical sequence per count vector: outputs in index order.
    outputs = torch.repeat_interleave(
        torch.arange(num_outputs).repeat(counts.shape[0]), counts.reshape(-1)
    ).reshape(counts.shape[0], n_samples)  # (C, N)
    rewards = success[outputs].double()
    advantages = _apply(advantage_fn, rewards)
    flipped = _apply(advantage_fn, rewards.flip(1)).flip(1)
    if not torch.allclose(advantages, flipped, atol=1e-10, rtol=1e-10):
        raise ValueError(
            "gradient_moments: advantage_fn must treat the N samples "
            "symmetrically (reordering a group must reorder its advantages)"
        )
    # sum_i A_i e_{z_i}: advantage mass on each output, minus (sum_i A_i) pi.
    probs = torch.softmax(logits, dim=0)
    on_output = torch.zeros(counts.shape[0], num_outputs, dtype=torch.float64)
    on_output.scatter_add_(1, outputs, advantages)
    estimates = (on_output - advantages.sum(1, keepdim=True) * probs) / n_samples  # (C, M)
    mean = weight @ estimates
    centred = estimates - mean
    covariance = (centred * weight[:, None]).T @ centred
    return mean, covariance


def _apply(advantage_fn, rewards: torch.Tensor) -> torch.Tensor:
    advantages = advantage_fn(rewards)
    if not isinstance(advantages, torch.Tensor) or advantages.shape != rewards.shape:
        raise ValueError("gradient_moments: advantage_fn must return a tensor shaped like rewards")
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("gradient_moments: advantage_fn returned NaN or infinite values")
    return advantages.double()
