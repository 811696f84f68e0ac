r"""Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al., 2021).

.. math:: \widehat{\mathrm{pass@}k} = 1 - \frac{\binom{n-c}{k}}{\binom{n}{k}}
          = 1 - \prod_{i=n-c+1}^{n}\Bigl(1 - \frac{k}{i}\Bigr) \quad (n - c \ge k),

and 1 when :math:`n - c < k`. The product form avoids the huge binomial coefficients. Its
expectation over :math:`c \sim \mathrm{Binomial}(n, p)` is exactly :math:`1-(1-p)^k`; the
plug-in :math:`1-(1-c/n)^k` is biased. Derived in: chapter 7.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from companion._checks import check_positive_int


def _as_counts(value, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or (
            np.issubdtype(array.dtype, np.floating)
            and np.all(np.isfinite(array))
            and np.all(array == np.round(array))
        )
    ):
        raise TypeError(f"estimate_pass_at_k: {name} must hold whole numbers, got {value!r}")
    return array.astype(np.int64)


def estimate_pass_at_k(n, c, k: int):
    r"""Unbiased estimate of pass@k, vectorised over ``n`` and ``c``.

    Parameters
    ----------
    n : int or array of int, any shape broadcastable with ``c``
        Samples drawn per problem, ``n >= k``.
    c : int or array of int
        Correct samples per problem, ``0 <= c <= n``.
    k : int
        Attempts, ``k >= 1``.

    Returns
    -------
    float for scalar input, else a float64 ndarray of the broadcast shape.

    Raises ``ValueError`` when ``k > n`` (no unbiased estimate exists from fewer than ``k``
    samples) or ``c`` lies outside ``[0, n]``.

    Derived in: chapter 7.
    """
    k = check_positive_int(k, "k")
    scalar = isinstance(n, numbers.Integral) and isinstance(c, numbers.Integral)
    n_arr, c_arr = np.broadcast_arrays(_as_counts(n, "n"), _as_counts(c, "c"))
    if n_arr.size and (n_arr < k).any():
        raise ValueError(
            f"estimate_pass_at_k: k = {k} exceeds the number of samples "
            f"n = {int(n_arr.min())}; the unbiased estimator needs n >= k"
        )
    if n_arr.size and ((c_arr < 0) | (c_arr > n_arr)).any():
        raise ValueError("estimate_pass_at_k: c must satisfy 0 <= c <= n")
    failures = n_arr - c_arr
    # log prod_{i=n-c+1}^{n} (1 - k/i) = L(n) - L(n - c), with L(m) = sum_{i=k+1}^{m} log1p(-k/i).
    n_max = int(n_arr.max()) if n_arr.size else k
    i = np.arange(k + 1, n_max + 1, dtype=np.float64)
    cumulative = np.concatenate([np.zeros(k + 1), np.cumsum(np.log1p(-k / i))])
    all_fail_too_few = failures < k
    log_fail = cumulative[n_arr] - cumulative[np.maximum(failures, k)]
    estimate = np.where(all_fail_too_few, 1.0, -np.expm1(log_fail))
    return float(estimate) if scalar else estimate
