r"""Group advantage estimators for binary-reward policy gradients.

Shapes and convention (the same for every function here):

=============  ===========  ==========================================================
symbol         shape        meaning
=============  ===========  ==========================================================
``rewards``    ``(P, N)``   reward of sample ``i`` of prompt ``x``: P prompts, N samples
``advantages`` ``(P, N)``   weight ``A_i`` of the score ``S_i = grad log pi(z_i | x)``
=============  ===========  ==========================================================

The gradient estimate for one prompt is :math:`\hat g = \frac1N \sum_{i=1}^N A_i S_i`, so the
surrogate loss is ``-mean(advantages * logprobs)`` (:func:`policy_gradient_loss`).

For binary rewards every estimator here has an expectation of the form
:math:`\mathbb{E}[\hat g] = c_N(p)\,\nabla p` with :math:`p` the pass rate; each docstring says
which objective that is the gradient of. With :math:`K = \sum_i r_i` successes:

========================  ==================================  =============================
estimator                 advantage :math:`A_i`               :math:`\mathbb{E}[\hat g]`
========================  ==================================  =============================
``reinforce``             :math:`r_i`                          :math:`\nabla p`
``rloo``                  :math:`r_i - \frac{K - r_i}{N-1}`     :math:`\nabla p`
``maxrl/divide_by_k``     :math:`N r_i / K` (0 if K = 0)        :math:`\nabla J^{(N)}`
``maxrl/control_variate`` :math:`N r_i / K - 1` (-1 if K = 0)   :math:`\nabla J^{(N)}`
``maxrl/algorithm1``      :math:`(r_i - \bar r)/\bar r` (0 if K = 0)  :math:`\nabla J^{(N-1)}`
========================  ==================================  =============================

Derived in: chapters 5 and 6.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch

from companion._checks import check_rewards, check_token_mask, narrowed, widened

AdvantageFn = Callable[[torch.Tensor], torch.Tensor]


def _all_finite(values: torch.Tensor) -> bool:
    """Whether every entry is finite: one sum, and an elementwise look only if that overflows."""
    return bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())


def _row_scale(values: torch.Tensor) -> torch.Tensor:
    """A power of two per row, shape (P, 1), with ``|values| / scale`` in [0, 2).

    Dividing by a power of two is exact, so a group can be computed in these units without
    overflow (values near the dtype's maximum) and scaled back. Constant, so autograd ignores it.
    """
    largest = values.detach().abs().amax(dim=1, keepdim=True)
    _, exponent = torch.frexp(largest)  # largest < 2**exponent
    scale = torch.ldexp(torch.ones_like(largest), exponent - 1)
    return torch.where(largest > 0, scale, torch.ones_like(scale))


def _deviations(work: torch.Tensor) -> torch.Tensor:
    """``r - mean(r)`` per row, shape (P, N), a fresh tensor.

    The mean is taken of ``r - min(r)`` (shifted data): exactly 0 for a constant group, and no
    cancellation against a large common offset. Binary rows are unchanged by the shift (their
    minimum is 0, or every entry is 1), so 0/1 rewards give the plain formula bit for bit.
    """
    shifted = work - work.amin(dim=1, keepdim=True)
    return shifted.sub_(shifted.mean(dim=1, keepdim=True))


def _overflow_safe(work: torch.Tensor, method: str, factor: float = 1.0) -> torch.Tensor:
    """``factor * (r - mean(r))`` in units of a power of two per row, scaled back at the end.

    For rewards near the dtype's largest value, where the direct formula overflowed; raises
    ``OverflowError`` only if a true advantage does not fit the dtype.
    """
    scale = _row_scale(work)
    advantages = _deviations(work / scale).mul_(factor).mul_(scale)
    if not _all_finite(advantages):
        raise OverflowError(
            f"{method}: an advantage overflows {work.dtype} (rewards near the dtype's "
            "largest value); rescale the rewards or pass float64"
        )
    return advantages


def reinforce(rewards: torch.Tensor) -> torch.Tensor:
    r"""REINFORCE without a baseline: :math:`A_i = r_i`.

    :math:`\mathbb{E}[\frac1N\sum_i r_i S_i] = \nabla p = \nabla J_{RL}`, for any ``N >= 1``
    and any real rewards (then :math:`\nabla \mathbb{E}[r]`).

    Parameters
    ----------
    rewards : Tensor, shape (P, N), floating point

    Returns
    -------
    Tensor, shape (P, N): a copy of ``rewards``.

    Derived in: chapter 5 (single-sample policy gradient), chapter 6.
    """
    check_rewards(rewards, method="reinforce")
    return rewards.clone()


def rloo(rewards: torch.Tensor) -> torch.Tensor:
    r"""REINFORCE with the leave-one-out baseline.

    .. math:: A_i = r_i - \frac{1}{N-1}\sum_{j \ne i} r_j = \frac{N}{N-1}(r_i - \bar r)

    The baseline of sample ``i`` does not depend on :math:`z_i`, so
    :math:`\mathbb{E}[\hat g] = \nabla p = \nabla J_{RL}` exactly. Needs ``N >= 2``.

    Computed in float32 for float16/bfloat16 rewards (then rounded back), so the group sum
    cannot overflow the half type; ``OverflowError`` if an advantage does not fit the dtype.

    Derived in: chapter 6.
    """
    check_rewards(rewards, min_samples=2, method="rloo")
    num_samples = rewards.shape[1]
    work = widened(rewards)
    total = work.sum(dim=1, keepdim=True)  # (P, 1)
    # r_i - (total - r_i)/(N-1) = r_i N/(N-1) - total/(N-1): one pass over (P, N), in place.
    advantages = (work * (num_samples / (num_samples - 1))).sub_(total / (num_samples - 1))
    if not _all_finite(advantages):
        advantages = _overflow_safe(work, "rloo", num_samples / (num_samples - 1))
    return narrowed(advantages, rewards.dtype, "rloo")


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"grpo: eps must be a positive float such as 1e-6, got {eps!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(
            f"grpo: eps must be finite and > 0 with scale='group' (a constant group has std 0), "
            f"got {eps!r}"
        )
    return float(eps)


def _normalised(work: torch.Tensor, eps: float | torch.Tensor, dof: int) -> torch.Tensor | None:
    """``(r - mean) / (std + eps)`` per row, or None where the scaled units are needed.

    None if a statistic overflowed, or if the squares of a non-constant group fell below the
    dtype's normal range while ``eps`` is too small to hide the lost precision (with
    ``eps >= sqrt(tiny) / machine eps`` the std is below one rounding unit of ``eps`` there).
    """
    centred = _deviations(work)  # (P, N)
    # Sum of squares by torch's cascade summation (vector_norm accumulates less precisely).
    squares = (centred * centred).sum(dim=1, keepdim=True)  # (P, 1)
    if not bool(torch.isfinite(squares).all()):  # an inf or NaN in centred shows here too
        return None
    info = torch.finfo(squares.dtype)
    if isinstance(eps, float) and eps < math.sqrt(info.tiny) / info.eps:
        flushed = squares[:, 0] < info.tiny  # (P,); a constant group has centred exactly 0
        if bool(flushed.any()) and bool(centred[flushed].any()):
            return None
    # sqrt's derivative is infinite at 0: a constant group takes the std 0 by selection, so its
    # gradient is (I - 1/N) / eps, the derivative of A there, instead of 0 * inf = NaN.
    positive = squares > 0
    spread = (torch.where(positive, squares, torch.ones_like(squares)) / dof).sqrt()
    denominator = torch.where(positive, spread, torch.zeros_like(spread)) + eps
    # An eps below the dtype's range adds 0: a constant group then gives 0, not 0 / 0.
    denominator = denominator.masked_fill(denominator == 0, 1.0)
    if centred.requires_grad:  # autograd keeps centred for the product's backward
        return centred / denominator
    return centred.div_(denominator)


def grpo(
    rewards: torch.Tensor,
    scale: Literal["group", "none"] = "group",
    eps: float = 1e-6,
    unbiased: bool = True,
) -> torch.Tensor:
    r"""GRPO's group-normalised advantage.

    .. math:: A_i = \frac{r_i - \bar r}{\operatorname{std}(r) + \varepsilon}
              \quad(\texttt{scale="group"}), \qquad A_i = r_i - \bar r \quad(\texttt{"none"})

    ``unbiased=True`` uses Bessel's correction (verl and TRL do); ``eps`` is 1e-6 in verl and
    the paper's code, 1e-4 in TRL. Groups whose rewards are all equal get ``A = 0``.

    Expectation for binary rewards: ``scale="none"`` (Dr. GRPO) gives
    :math:`\frac{N-1}{N}\nabla p`, a scaled :math:`\nabla J_{RL}`. ``scale="group"`` gives
    :math:`c_N(p)\nabla p` whose weight tends to :math:`1/\sqrt{p(1-p)}` as
    :math:`N \to \infty`, the gradient of :math:`2\arcsin\sqrt p`; at finite ``N`` it is
    the gradient of :math:`\int c_N(p)\,dp`, computed exactly in chapter 6. Needs ``N >= 2``.

    Differentiable with respect to ``rewards`` (e.g. for a learned reward model). Computed in
    float32 for float16/bfloat16 rewards and rounded back; rewards so large that the squares
    overflow, or so close together that the squares underflow while ``eps`` is tinier still,
    are handled in units of a power of two per group (:math:`A` is unchanged when rewards and
    ``eps`` are scaled together), so the result is never a spurious 0 or NaN; a constant group
    gets 0 even where ``eps`` is below the dtype's range.

    Derived in: chapter 3 (weight), chapter 6 (exact expectation).
    """
    check_rewards(rewards, min_samples=2, method="grpo")
    if scale not in ("group", "none"):
        raise ValueError(f"grpo: scale must be 'group' or 'none', got {scale!r}")
    work = widened(rewards)
    if scale == "none":
        centred = work - work.mean(dim=1, keepdim=True)
        if not _all_finite(centred):
            centred = _overflow_safe(work, "grpo")
        return narrowed(centred, rewards.dtype, "grpo")
    eps = _check_eps(eps)
    dof = rewards.shape[1] - 1 if unbiased else rewards.shape[1]
    advantages = _normalised(work, eps, dof)
    if advantages is None:  # |r| or its spread at the dtype's limits: the formula in scaled units
        row_scale = _row_scale(work)
        # eps in the same units, divided in float64 (a number over a tensor is computed as a
        # product with the reciprocal, which overflows for a subnormal scale).
        eps_scaled = (torch.full_like(row_scale, eps, dtype=torch.float64) / row_scale).to(work)
        advantages = _normalised(work / row_scale, eps_scaled, dof)
    return narrowed(advantages, rewards.dtype, "grpo")


Variant = Literal["algorithm1", "divide_by_k", "control_variate"]


def maxrl(rewards: torch.Tensor, variant: Variant = "algorithm1") -> torch.Tensor:
    r"""MaxRL advantages: normalise by the number of successes :math:`K` instead of :math:`N`.

    ``variant="divide_by_k"`` (the paper's eq. 9): :math:`\hat g = \frac1K\sum_i r_i S_i`,
    i.e. :math:`A_i = N r_i / K`, and 0 when :math:`K = 0`.
    Unbiased for :math:`\nabla J^{(N)}_{\mathrm{MaxRL}} = \frac{1-(1-p)^N}{p}\nabla p`.

    ``variant="control_variate"`` (eq. 10): :math:`\hat g = \sum_i (r_i/K - 1/N) S_i`,
    i.e. :math:`A_i = N r_i / K - 1`, and :math:`A_i = -1` when :math:`K = 0` (the
    zero-mean term :math:`-\frac1N\sum_i S_i` stays). Also unbiased for
    :math:`\nabla J^{(N)}`.

    ``variant="algorithm1"`` (the paper's Algorithm 1, what its experiments and the public
    trainers run): :math:`A_i = (r_i - \bar r)/\bar r` with :math:`\bar r = K/N`, and 0 when
    :math:`K = 0`. Equal to the control variate when :math:`K \ge 1`; dropping the
    :math:`K = 0` term removes :math:`-(1-p)^{N-1}\nabla p` from the expectation, so it is
    unbiased for :math:`\nabla J^{(N-1)}_{\mathrm{MaxRL}}`, not :math:`\nabla J^{(N)}`.
    With ``N = 1`` it is identically zero, so ``N >= 2`` is required.

    Computed in float32 for float16/bfloat16 rewards and rounded back; ``OverflowError`` where
    an advantage (at most ``N``) does not fit the dtype (float16 with ``N > 65504``).

    All variants need binary rewards in {0, 1}. Groups where every sample succeeds get
    ``A = 0`` in ``algorithm1`` and ``control_variate`` (and ``A = 1`` in ``divide_by_k``).

    Parameters
    ----------
    rewards : Tensor, shape (P, N), values in {0, 1}
    variant : "algorithm1" | "divide_by_k" | "control_variate"

    Returns
    -------
    Tensor, shape (P, N)

    Examples
    --------
    >>> maxrl(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    tensor([[ 3., -1., -1., -1.]])

    Derived in: chapter 5 (divide_by_k), chapter 6 (control_variate, algorithm1).
    """
    if variant not in ("algorithm1", "divide_by_k", "control_variate"):
        raise ValueError(
            f"maxrl: variant must be 'algorithm1', 'divide_by_k' or "
            f"'control_variate', got {variant!r}"
        )
    check_rewards(rewards, binary=True, method=f"maxrl(variant={variant!r})")
    if variant == "algorithm1" and rewards.shape[1] == 1:
        raise ValueError(
            "maxrl(variant='algorithm1'): with N = 1 sample per prompt the "
            "advantage (r - mean)/mean is identically zero (no learning signal); "
            "use N >= 2, or variant='divide_by_k' which equals REINFORCE at N = 1"
        )
    num_samples = rewards.shape[1]
    work = widened(rewards)  # float32 for half types: K and N / K overflow float16 past 65504
    successes = work.sum(dim=1, keepdim=True)  # K, shape (P, 1)
    # N / K, shape (P, 1), correctly rounded (a Python number divided by a tensor would be
    # computed as N * (1 / K), one rounding more).
    factor = torch.full_like(successes, num_samples) / successes.clamp_min(1.0)
    name = f"maxrl(variant={variant!r})"
    if variant == "divide_by_k":
        return narrowed(work * factor, rewards.dtype, name)  # N r_i / K, 0 when K = 0
    if variant == "control_variate":
        offset = torch.ones_like(successes)
    else:  # Algorithm 1: N r_i / K - 1 when K >= 1, and 0 when K = 0 (every r_i is 0 then)
        offset = (successes > 0).to(work.dtype)
    # N r_i / K - offset, the second pass in place (the product is a fresh tensor).
    return narrowed((work * factor).sub_(offset), rewards.dtype, name)


#: Advantage functions by name, each mapping rewards (P, N) to advantages (P, N).
ADVANTAGES: dict[str, AdvantageFn] = {
    "reinforce": reinforce,
    "rloo": rloo,
    "grpo": grpo,
    "dr_grpo": partial(grpo, scale="none"),
    "maxrl": maxrl,
    "maxrl_divide_by_k": partial(maxrl, variant="divide_by_k"),
    "maxrl_control_variate": partial(maxrl, variant="control_variate"),
}


def policy_gradient_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    aggregation: Literal["sequence", "token_mean"] = "sequence",
) -> torch.Tensor:
    r"""Surrogate loss whose gradient is the policy-gradient estimate.

    Sequence log-probabilities, ``logprobs`` of shape ``(P, N)``:

    .. math:: L = -\frac{1}{PN}\sum_{x,i} A_{x,i}\,\log\pi(z_{x,i}\mid x)

    Token log-probabilities, ``logprobs`` of shape ``(P, N, L)`` with ``mask`` ``(P, N, L)``
    (1 for generated tokens, 0 for padding); the advantage of a sequence is copied to its
    tokens.

    * ``aggregation="sequence"``: sum over tokens (the sequence log-probability), mean over
      the P*N sequences. Same gradient as the 2-D form, so the book's unbiasedness results hold.
    * ``aggregation="token_mean"``: divide by the number of unmasked tokens in the batch, as
      the paper's LLM runs and TRL's default do. Within one batch this is the ``"sequence"``
      gradient times :math:`PN/\#\mathrm{tokens}`: the same direction, with a step size that
      changes from batch to batch with the answers' lengths. (Averaging tokens per sequence
      first, as some trainers do, would instead down-weight long answers; chapter 10.)

    Padded positions are selected out, not multiplied by 0: a ``-inf`` or NaN log-probability
    there changes neither the loss nor the gradient (which is 0 at padded positions). ``mask``
    holds 1/0 or bools. ``advantages`` are treated as constants (detached) and converted to
    ``logprobs``' dtype (``OverflowError`` if they do not fit). Returns a scalar tensor.

    Derived in: chapter 5 (the surrogate), chapter 10 (token aggregation).
    """
    if not isinstance(logprobs, torch.Tensor) or not isinstance(advantages, torch.Tensor):
        raise TypeError("policy_gradient_loss: logprobs and advantages must be torch tensors")
    if not logprobs.is_floating_point():
        raise TypeError(
            f"policy_gradient_loss: logprobs must be floating-point log-probabilities, got "
            f"{logprobs.dtype}; use e.g. torch.log_softmax(logits, -1).gather(...)"
        )
    if advantages.ndim != 2:
        raise ValueError(
            f"policy_gradient_loss: advantages must have shape (P, N), got "
            f"{tuple(advantages.shape)}"
        )
    if logprobs.device != advantages.device:
        raise ValueError(
            f"policy_gradient_loss: logprobs on {logprobs.device} but advantages on "
            f"{advantages.device}; move them to the same device"
        )
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("policy_gradient_loss: advantages contain NaN or infinite values")
    advantages = narrowed(advantages.detach(), logprobs.dtype, "policy_gradient_loss")
    if logprobs.ndim == 2:
        if mask is not None:
            raise ValueError("policy_gradient_loss: mask is only for token log-probs (P, N, L)")
        if logprobs.shape != advantages.shape:
            raise ValueError(
                f"policy_gradient_loss: logprobs {tuple(logprobs.shape)} and "
                f"advantages {tuple(advantages.shape)} must have the same shape"
            )
        return -(advantages * logprobs).mean()
    if logprobs.ndim != 3 or logprobs.shape[:2] != advantages.shape:
        raise ValueError(
            f"policy_gradient_loss: expected logprobs (P, N) or (P, N, L) matching "
            f"advantages {tuple(advantages.shape)}, got {tuple(logprobs.shape)}"
        )
    keep = check_token_mask(mask, logprobs)  # bool (P, N, L)
    # Select, not multiply: a -inf or NaN log-prob at a padded position never reaches the sum
    # (0 * -inf is NaN), and its gradient is exactly 0.
    weighted = advantages[..., None] * torch.where(keep, logprobs, 0.0)  # (P, N, L)
    if aggregation == "sequence":
        return -weighted.sum(-1).mean()
    if aggregation == "token_mean":
        tokens = int(keep.sum())
        if tokens == 0:
            raise ValueError("policy_gradient_loss: mask selects no tokens")
        return -weighted.sum() / tokens
    raise ValueError(
        f"policy_gradient_loss: aggregation must be 'sequence' or 'token_mean', got {aggregation!r}"
    )


from companion.flat import grouped  # noqa: E402, F401  (re-exported)
