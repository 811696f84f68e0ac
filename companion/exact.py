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

from companion._checks import check_positive_int, check_probability

#: Refuse enumerations larger than this many count vectors.
MAX_COMPOSITIONS = 2_000_000
#: Refuse enumerations whose (count vectors) x (N + M) tables exceed this many values: the
#: outputs, rewards and advantages (and their reversed copies) are each such a table, about
#: 48 bytes per value in all, so this caps the memory near 0.8 GB.
MAX_TABLE_VALUES = 1 << 24
_BYTES_PER_VALUE = 48


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

    Raises ``ValueError`` before allocating anything when the enumeration is too large: more
    than :data:`MAX_COMPOSITIONS` count vectors, or tables of more than
    :data:`MAX_TABLE_VALUES` values (count vectors times ``N + M``).

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
    values = count * (n_samples + num_outputs)  # size of the (C, N) and (C, M) tables
    if count > MAX_COMPOSITIONS or values > MAX_TABLE_VALUES:
        raise ValueError(
            f"gradient_moments: {count} count vectors of N = {n_samples} samples over "
            f"M = {num_outputs} outputs would need about {values * _BYTES_PER_VALUE / 1e9:.3g} GB; "
            f"at most {MAX_COMPOSITIONS} count vectors and {MAX_TABLE_VALUES} table values "
            "are enumerated (use fewer outputs or samples, or Monte Carlo)"
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


#: ``group_weight`` evaluates at most this many (pass rate, companion count) pairs at once.
_GROUP_WEIGHT_CHUNK = 1 << 22


def group_weight(advantage_fn: Callable[[torch.Tensor], torch.Tensor], p, n_samples: int):
    r"""The factor :math:`c_N(p)` in :math:`\mathbb E[\hat g] = c_N(p)\,\nabla p` at finite N.

    For binary rewards and an advantage function that treats the ``N`` samples of a group
    symmetrically, write :math:`A(r; K)` for the advantage of a sample with reward ``r`` in a
    group with ``K`` successes. By symmetry :math:`\mathbb E[\hat g] = \mathbb E[A_1 S_1]`;
    conditioning on the first sample, whose companions hold :math:`K' \sim
    \mathrm{Bin}(N-1, p)` successes independently of it, and using
    :math:`\sum_{z \in S}\pi_z S_z = \nabla p = -\sum_{z \notin S}\pi_z S_z`,

    .. math:: c_N(p) = \mathbb E\bigl[A(1; 1 + K')\bigr] - \mathbb E\bigl[A(0; K')\bigr]
              = \sum_{j=0}^{N-1} \binom{N-1}{j} p^j (1-p)^{N-1-j}
                \bigl(A(1; 1+j) - A(0; j)\bigr).

    Closed forms (chapter 3): 1 for REINFORCE and RLOO, :math:`(N-1)/N` for Dr. GRPO,
    :math:`(1-(1-p)^N)/p` for MaxRL's eq. 9/10 and :math:`(1-(1-p)^{N-1})/p` for
    Algorithm 1. The :math:`N` values :math:`A(1;1+j) - A(0;j)` come from ``advantage_fn`` on
    the rows of two ``(N, N)`` reward tables, a block of rows at a time (memory O(N) per row,
    time O(N^2): about 3 s at N = 4096 and 25 s at N = 16384 on a CPU); the binomial weights
    are computed in log space, so the result keeps its relative precision for ``p`` down to
    1e-12 and ``N`` in the thousands.

    Parameters
    ----------
    advantage_fn : callable, rewards (P, N) -> advantages (P, N)
        E.g. an entry of :data:`companion.estimators.ADVANTAGES`; checked for symmetry.
    p : float, ndarray or Tensor, any shape
        Pass rates in [0, 1].
    n_samples : int
        ``N``, samples per group (at least what ``advantage_fn`` needs).

    Returns
    -------
    The same kind as ``p``: a float, a float64 ndarray, or a tensor of ``p``'s dtype and
    device (computed in float64).

    Derived in: chapter 3 (closed forms), chapter 6 (the estimator family).
    """
    value, kind = check_probability(p)
    n = check_positive_int(n_samples, "n_samples")
    if n > 1 << 16:
        raise ValueError(f"group_weight: n_samples = {n} is too large; at most 65536 are supported")
    if not callable(advantage_fn):
        raise TypeError(f"group_weight: advantage_fn must be callable, got {advantage_fn!r}")
    # Row j: the first sample's reward, then j successes and N-1-j failures among its companions,
    # built a block of rows at a time so that memory stays O(N) per row (O(N^2) in all would be
    # 34 GB at N = 65536).
    companions = torch.arange(n, dtype=torch.float64)  # j = 0..N-1
    difference = torch.zeros(n, dtype=torch.float64)
    block = max(1, _GROUP_WEIGHT_CHUNK // n)
    # Symmetry, checked on at most 64 evenly spaced rows (every row for N <= 64).
    checked = torch.unique(torch.linspace(0, n - 1, min(n, 64)).round().long())
    for first, sign in ((1.0, 1.0), (0.0, -1.0)):
        for start in range(0, n, block):
            rewards = _group_rows(first, companions[start : start + block], n)
            difference[start : start + block] += sign * _apply(advantage_fn, rewards)[:, 0]
        rewards = _group_rows(first, companions[checked], n)
        reversed_advantages = _apply(advantage_fn, rewards.flip(1)).flip(1)
        if not torch.allclose(
            _apply(advantage_fn, rewards), reversed_advantages, atol=1e-10, rtol=1e-10
        ):
            raise ValueError(
                "group_weight: advantage_fn must treat the N samples symmetrically "
                "(reordering a group must reorder its advantages)"
            )
    log_binomial = (
        math.lgamma(n) - torch.lgamma(companions + 1) - torch.lgamma(n - companions)
    )  # (N,)
    if kind == "torch":
        flat = value.detach().to("cpu", torch.float64).reshape(-1)
    else:
        flat = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    result = torch.empty_like(flat)
    rows = max(1, _GROUP_WEIGHT_CHUNK // n)
    for start in range(0, flat.numel(), rows):
        chunk = flat[start : start + rows, None]  # (B, 1)
        log_pmf = (
            log_binomial
            + torch.special.xlogy(companions, chunk)
            + _xlog1m(n - 1 - companions, chunk)
        )  # (B, N)
        result[start : start + rows] = log_pmf.exp() @ difference
    result = result.reshape(value.shape) + 0.0
    if kind == "torch":
        return result.to(device=value.device, dtype=value.dtype)
    if kind == "float":
        return float(result)
    return result.numpy()


def _group_rows(first: float, successes: torch.Tensor, n: int) -> torch.Tensor:
    """Reward rows (B, N): ``first``, then ``successes[b]`` ones and the rest zeros."""
    others = (torch.arange(n - 1)[None, :] < successes[:, None]).double()  # (B, N-1)
    return torch.cat([torch.full((len(successes), 1), first, dtype=torch.float64), others], 1)


def _xlog1m(count: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``count * log(1 - p)`` via ``log1p`` (precise for tiny ``p``), and 0 where ``count = 0``."""
    product = count * torch.log1p(-p)
    return torch.where(count == 0, torch.zeros_like(product), product)
