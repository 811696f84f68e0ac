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
    """Return ``value`` as an int >= 1 (or ``math.inf`` when allowed), else raise."""
    if allow_inf and isinstance(value, float) and math.isinf(value) and value > 0:
        return math.inf
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer() and value >= 1:
            return int(value)
        extra = " or math.inf" if allow_inf else ""
        raise TypeError(f"{name} must be a positive integer{extra}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)
