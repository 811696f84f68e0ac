"""Input validation shared by the companion's public functions.

Every public function validates its input and raises ``TypeError`` or ``ValueError`` with a
message that says what was wrong and what was expected, instead of returning NaN, inf or a
silent zero.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def check_rewards(
    rewards: object, *, min_samples: int = 1, binary: bool = False, method: str = "this estimator"
) -> torch.Tensor:
    """Check a reward tensor of shape ``(P, N)`` and return it unchanged.

    Raises
    ------
    TypeError
        ``rewards`` is not a floating-point ``torch.Tensor``.
    ValueError
        Wrong number of dimensions, an empty axis, fewer than ``min_samples`` samples per
        prompt, a NaN or infinite entry, or (``binary=True``) a value outside {0, 1}.
    """
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(
            f"{method}: rewards must be a torch.Tensor of shape (P, N), got "
            f"{type(rewards).__name__}; wrap it with torch.as_tensor(..., dtype=torch.float32)"
        )
    if not rewards.is_floating_point():
        raise TypeError(
            f"{method}: rewards must have a floating-point dtype, got {rewards.dtype}; "
            "convert with rewards.float()"
        )
    if rewards.ndim != 2:
        raise ValueError(
            f"{method}: rewards must have shape (P, N) = (prompts, samples per prompt), got "
            f"shape {tuple(rewards.shape)}; for a single prompt use rewards[None, :]"
        )
    num_prompts, num_samples = rewards.shape
    if num_prompts == 0 or num_samples == 0:
        raise ValueError(f"{method}: rewards has an empty axis, shape {tuple(rewards.shape)}")
    if num_samples < min_samples:
        raise ValueError(
            f"{method}: needs at least N = {min_samples} samples per prompt, got N = {num_samples}"
        )
    if binary:
        # Fast path (no boolean tensors): inside [0, 1] the fractional parts are >= 0, so they
        # sum to 0 exactly when every reward is 0 or 1; NaN fails the range test.
        low, high = torch.aminmax(rewards)
        if not bool((low >= 0) & (high <= 1) & (torch.frac(rewards).sum() == 0)):
            bad = rewards[(rewards != 0) & (rewards != 1)]
            if not bool(torch.isfinite(bad).all()):
                raise ValueError(f"{method}: rewards contain NaN or infinite values")
            raise ValueError(
                f"{method}: assumes binary rewards in {{0, 1}}, got e.g. {float(bad[0]):g}; "
                "threshold a verifier's score into 0/1 first"
            )
    # Any NaN or inf makes the sum non-finite; only then look element by element (a finite
    # sum can also overflow, which is not an error).
    elif not bool(torch.isfinite(rewards.sum())) and not bool(torch.isfinite(rewards).all()):
        raise ValueError(f"{method}: rewards contain NaN or infinite values")
    return rewards


def check_probability(p: object, name: str = "p"):
    """Check that ``p`` (float, ndarray or tensor) holds finite probabilities in [0, 1].

    Returns ``(value, kind)`` where ``kind`` is ``"float"``, ``"numpy"`` or ``"torch"`` and
    ``value`` is a float64 ndarray for floats and arrays, the tensor itself for tensors.
    """
    if isinstance(p, torch.Tensor):
        if not p.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got {p.dtype}")
        value, kind = p, "torch"
        detached = p.detach()
        finite = bool(torch.isfinite(detached).all())
        low = float(detached.min()) if p.numel() else 0.0
        high = float(detached.max()) if p.numel() else 0.0
    elif isinstance(p, (numbers.Real, np.ndarray, list, tuple)) and not isinstance(p, bool):
        value = np.asarray(p, dtype=np.float64)
        kind = "float" if np.ndim(value) == 0 and isinstance(p, numbers.Real) else "numpy"
        finite = bool(np.isfinite(value).all())
        low = float(value.min()) if value.size else 0.0
        high = float(value.max()) if value.size else 0.0
    else:
        raise TypeError(
            f"{name} must be a float, a numpy array or a torch tensor, got {type(p).__name__}"
        )
    if not finite:
        raise ValueError(f"{name} contains NaN or infinite values; expected values in [0, 1]")
    if low < 0 or high > 1:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{low:g}, {high:g}]")
    return value, kind


def check_positive_int(value: object, name: str, *, allow_inf: bool = False) -> int | float:
    """Return ``value`` as an int >= 1 (or ``math.inf`` when allowed), else raise.

    Any real number whose value is a whole number is accepted: Python and NumPy integers, and
    floats of any precision (``4.0``, ``np.float32(4)``, ``1e300``); huge integers such as
    ``10**400`` stay exact Python ints.

    Raises
    ------
    TypeError
        ``value`` is not a real number, is a bool, or is not a whole number (``2.5``, NaN,
        ``-inf``, or ``inf`` where ``allow_inf`` is false).
    ValueError
        A whole number below 1.
    """
    extra = " or math.inf" if allow_inf else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive integer{extra}, got {value!r}")
    if isinstance(value, numbers.Integral):
        number = int(value)
    else:
        real = float(value)
        if allow_inf and real == math.inf:
            return math.inf
        if not real.is_integer():  # NaN, +-inf and fractions
            raise TypeError(f"{name} must be a positive integer{extra}, got {value!r}")
        number = int(real)
    if number < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return number


def check_token_mask(mask: torch.Tensor | None, logprobs: torch.Tensor) -> torch.Tensor:
    """The mask as bools shaped like ``logprobs``; it must hold only 0/1 (or be bool)."""
    if mask is None:
        return torch.ones_like(logprobs, dtype=torch.bool)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"policy_gradient_loss: mask must be a torch tensor, got {type(mask)}")
    if mask.shape != logprobs.shape:
        raise ValueError(
            f"policy_gradient_loss: mask {tuple(mask.shape)} must match logprobs "
            f"{tuple(logprobs.shape)}"
        )
    if mask.device != logprobs.device:
        raise ValueError("policy_gradient_loss: mask must be on the same device as logprobs")
    if mask.dtype == torch.bool:
        return mask
    keep = mask == 1
    if not bool((keep | (mask == 0)).all()):
        raise ValueError(
            "policy_gradient_loss: mask must hold 1 for generated tokens and 0 for padding "
            "(or be a bool tensor); got other values"
        )
    return keep


def widened(values: torch.Tensor) -> torch.Tensor:
    """``values`` in the dtype to compute with: float32 for float16 and bfloat16, else as is.

    Half-precision sums and counts overflow (float16 stops at 65504) or round badly (bfloat16
    keeps 8 bits), so reductions over a group run in at least float32.
    """
    if values.dtype in (torch.float16, torch.bfloat16):
        return values.float()
    return values


def narrowed(result: torch.Tensor, dtype: torch.dtype, method: str) -> torch.Tensor:
    """Round ``result`` to ``dtype``; raise ``OverflowError`` if a finite value does not fit.

    Only a conversion to a narrower dtype can overflow here, so only that case is checked.
    """
    if result.dtype == dtype:
        return result
    out = result.to(dtype)
    if torch.finfo(dtype).max < torch.finfo(result.dtype).max and not bool(
        torch.isfinite(out).all()
    ):
        largest = float(result.detach().abs().max())
        raise OverflowError(
            f"{method}: a result of magnitude {largest:g} does not fit in {dtype} (largest "
            f"{torch.finfo(dtype).max:g}); pass float32 or float64 input"
        )
    return out
