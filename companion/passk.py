r"""Unbiased estimates from ``n`` samples of which ``c`` are correct (Chen et al., 2021).

Both estimators rest on the all-fail ratio

.. math:: r_k(n, c) = \frac{\binom{n-c}{k}}{\binom{n}{k}}
          = \prod_{i=n-c+1}^{n}\Bigl(1 - \frac{k}{i}\Bigr)
          = \prod_{j=0}^{k-1}\Bigl(1 - \frac{c}{n-j}\Bigr) \quad (n - c \ge k),

and :math:`r_k = 0` when :math:`n - c < k`. Its expectation over
:math:`c \sim \mathrm{Binomial}(n, p)` is :math:`(1-p)^k` for every :math:`k \le n`, so

* :func:`estimate_pass_at_k` returns :math:`1 - r_k`, unbiased for :math:`1 - (1-p)^k`;
* :func:`estimate_j_maxrl` returns :math:`-\sum_{k=1}^{T} r_k / k`, unbiased for
  :math:`J^{(T)}(p) = -\sum_{k=1}^{T} (1-p)^k / k` (:func:`companion.objectives.j_maxrl`).

Numerics. :math:`\log r_k` is a sum of :math:`\min(c, k)` negative terms
:math:`\log(1 - s/x)`, :math:`s = \max(c, k)`, over consecutive integers
:math:`x = n-\min(c,k)+1, \dots, n`. The 32 terms nearest the singularity :math:`x = s` are
summed one by one (each with ``log1p``, or ``log`` of an exact integer ratio when
:math:`s/x > 1/2`); the rest by the midpoint Euler-Maclaurin formula: the integral in a
closed form whose three terms are each at most the result in size, plus five derivative
corrections; the remainder after them is below 1e-18 of the result. Every piece is negative or
small, so nothing cancels: the relative error of :math:`\log r_k` stays near 1e-15 for all
:math:`n < 2^{63}`, and the work and memory do not grow with ``n``. Derived in: chapter 7.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from companion._checks import check_positive_int

#: Terms next to the singularity that are summed one by one before Euler-Maclaurin.
_DIRECT_TERMS = 32
#: Midpoint Euler-Maclaurin: sum_{x=a}^{b} f(x) = int_{a-1/2}^{b+1/2} f
#: + sum_j B_{2j}(1/2) / (2j)! [f^(2j-1)(b+1/2) - f^(2j-1)(a-1/2)] + remainder. These are
#: B_{2j}(1/2) / ((2j)(2j-1)) = B_{2j}(1/2) (2j-2)! / (2j)!, j = 1..5.
_EM_COEFFICIENTS = (-1 / 24, 7 / 2880, -31 / 40320, 127 / 215040, -2555 / 3041280)
_INT64_MAX = np.iinfo(np.int64).max
#: Terms of :func:`estimate_j_maxrl` evaluated at once: at most _J_BLOCK per row and
#: _J_VALUES in all (memory = a few float64 arrays of that many values).
_J_BLOCK = 4096
_J_VALUES = 2**20
#: Within a block, r_k is recomputed exactly every this many k and multiplied out between.
_ANCHOR_EVERY = 64


def _python_ints(value):
    """The Python ints inside nested lists and tuples (NumPy would turn big ones into floats)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _python_ints(item)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield value


def _reject_out_of_range(value, array: np.ndarray, name: str, caller: str) -> None:
    """Refuse counts that int64 cannot hold, quoting the value as the caller gave it."""
    outside = [v for v in _python_ints(value) if not -_INT64_MAX - 1 <= v <= _INT64_MAX]
    if array.dtype == object:
        flat = array.ravel().tolist()
        if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in flat):
            raise TypeError(f"{caller}: {name} must hold whole numbers, got {value!r}")
        outside += [v for v in flat if not -_INT64_MAX - 1 <= v <= _INT64_MAX]
    elif np.issubdtype(array.dtype, np.unsignedinteger):
        outside += array[array > _INT64_MAX].tolist()
    elif np.issubdtype(array.dtype, np.floating):
        outside += array[np.abs(array) >= np.float64(2.0**63)].tolist()  # not in float16
    if outside:
        raise ValueError(
            f"{caller}: {name} = {outside[0]!r} lies outside the supported range of counts "
            f"[0, 2**63 - 1]; got {value!r}"
        )


def _as_counts(value, name: str, caller: str) -> np.ndarray:
    """Whole numbers (int, float, array or tensor) as an int64 array, else a clear error."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype != object and (
        array.dtype == bool
        or not (
            np.issubdtype(array.dtype, np.integer)
            or (
                np.issubdtype(array.dtype, np.floating)
                and np.all(np.isfinite(array))
                and np.all(array == np.round(array))
            )
        )
    ):
        raise TypeError(f"{caller}: {name} must hold whole numbers, got {value!r}")
    _reject_out_of_range(value, array, name, caller)
    return array.astype(np.int64)


def _check_order(value, name: str) -> int:
    """``k`` or ``T``: a positive whole number; NumPy scalars count like Python numbers."""
    if isinstance(value, np.floating):
        value = float(value)
    return check_positive_int(value, name)


def _validated(n, c, order: int, order_name: str, caller: str):
    """Broadcast ``n`` and ``c`` to int64 arrays and check ``order <= n`` and ``0 <= c <= n``."""
    n_arr, c_arr = np.broadcast_arrays(_as_counts(n, "n", caller), _as_counts(c, "c", caller))
    if n_arr.size and (n_arr < order).any():
        raise ValueError(
            f"{caller}: {order_name} = {order} exceeds the number of samples "
            f"n = {int(n_arr.min())}; the unbiased estimator needs n >= {order_name}"
        )
    outside = (c_arr < 0) | (c_arr > n_arr)
    if outside.any():
        first = np.argwhere(outside)[0]
        raise ValueError(
            f"{caller}: c must satisfy 0 <= c <= n; got c = {int(c_arr[tuple(first)])} "
            f"with n = {int(n_arr[tuple(first)])}"
        )
    scalar = all(isinstance(v, numbers.Real) and not isinstance(v, np.ndarray) for v in (n, c))
    return n_arr, c_arr, scalar


def _log_one_minus(s: np.ndarray, x: np.ndarray, x_minus_s: np.ndarray) -> np.ndarray:
    r""":math:`\log(1 - s/x)` for :math:`0 \le s < x`, given the exact difference ``x - s``.

    ``log1p(-s/x)`` loses precision as :math:`s/x \to 1`; there the ratio of the two exact
    integers, :math:`(x - s)/x \le 1/2`, is rounded once and its ``log`` is well conditioned.
    """
    near_one = x_minus_s < 0.5 * x
    return np.where(near_one, np.log(x_minus_s / x), np.log1p(-np.where(near_one, 0.0, s / x)))


def _log_fail_ratio(n: np.ndarray, c: np.ndarray, k: np.ndarray) -> np.ndarray:
    r""":math:`\log r_k(n, c) = \log[\binom{n-c}{k} / \binom{n}{k}]` for int64 arrays with
    :math:`c \ge 0`, :math:`k \ge 1`, :math:`n - c \ge k` (broadcast together).

    Writes it as :math:`\sum_{x=n-m+1}^{n} \log(1 - s/x)` with :math:`m = \min(c, k)`,
    :math:`s = \max(c, k)`, sums the first ``_DIRECT_TERMS`` terms directly and the rest by
    the midpoint Euler-Maclaurin formula (see the module docstring).
    """
    n, c, k = np.broadcast_arrays(n, c, k)
    m, s = np.minimum(c, k), np.maximum(c, k)
    gap = n - c - k  # >= 0: the first term has x - s = gap + 1
    s_f = s.astype(np.float64)
    # exact below 2**53, rounded once above; in uint64, as n - m + 1 = 2**63 at m = 0
    first_x = ((n - m).astype(np.uint64) + np.uint64(1)).astype(np.float64)
    first_gap = (gap + 1).astype(np.float64)
    total = np.zeros(n.shape)
    m_max = int(m.max()) if m.size else 0
    for j in range(min(_DIRECT_TERMS, m_max)):
        term = _log_one_minus(s_f, first_x + j, first_gap + j)  # x - s >= 1: always finite
        total += np.where(j < m, term, 0.0)
    if m_max <= _DIRECT_TERMS:
        return total
    # x from n - m + D + 1 to n, D = _DIRECT_TERMS: integral over [alpha, beta] + corrections
    width = np.maximum(m - _DIRECT_TERMS, 0).astype(np.float64)
    alpha = (n - m).astype(np.float64) + (_DIRECT_TERMS + 0.5)
    # alpha - s; in uint64, as gap + D can pass 2**63 - 1 where m < D (a row left unused)
    alpha_gap = (gap.astype(np.uint64) + np.uint64(_DIRECT_TERMS)).astype(np.float64) + 0.5
    beta = n.astype(np.float64) + 0.5
    beta_gap = (n - s).astype(np.float64) + 0.5  # beta - s
    # int_alpha^beta log(1 - s/x) dx = [(x-s) log(x-s) - x log x]_alpha^beta, regrouped so
    # that each term is at most the integral in size
    integral = (
        width * _log_one_minus(s_f, beta, beta_gap)
        + alpha_gap * np.log1p(s_f * width / (alpha_gap * beta))
        - s_f * np.log1p(width / alpha)
    )
    # f^(2j-1)(x) = (2j-2)! [(x-s)^-(2j-1) - x^-(2j-1)] = (2j-2)! x^-(2j-1) expm1((2j-1) L(x));
    # the (2j-2)! is inside _EM_COEFFICIENTS
    log_ratio_beta = -_log_one_minus(s_f, beta, beta_gap)  # L(x) = log(x / (x - s)) >= 0
    log_ratio_alpha = -_log_one_minus(s_f, alpha, alpha_gap)
    correction = np.zeros(n.shape)
    for j, coefficient in enumerate(_EM_COEFFICIENTS, start=1):
        q = 2 * j - 1
        at_beta = np.expm1(q * log_ratio_beta) / beta**q
        at_alpha = np.expm1(q * log_ratio_alpha) / alpha**q
        correction += coefficient * (at_beta - at_alpha)
    return total + np.where(m > _DIRECT_TERMS, integral + correction, 0.0)


def _harmonic_difference(upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    r""":math:`H_{\mathrm{upper}} - H_{\mathrm{lower}} = \sum_{j=\mathrm{lower}+1}^{\mathrm{upper}}
    1/j` for int64 arrays ``0 <= lower <= upper``, by the same direct + Euler-Maclaurin split."""
    width = upper - lower
    total = np.zeros(np.shape(upper))
    for j in range(_DIRECT_TERMS):
        total += np.where(j < width, 1.0 / (lower + 1 + np.minimum(j, width - 1)), 0.0)
    alpha = lower.astype(np.float64) + (_DIRECT_TERMS + 0.5)
    beta = upper.astype(np.float64) + 0.5
    rest = np.maximum(width - _DIRECT_TERMS, 0).astype(np.float64)
    integral = np.log1p(rest / alpha)
    # f(x) = 1/x: f^(2j-1)(x) = -(2j-1)! / x^(2j)
    correction = np.zeros(np.shape(upper))
    for j, coefficient in enumerate(_EM_COEFFICIENTS, start=1):
        correction += coefficient * (2 * j - 1) * (alpha ** (-2.0 * j) - beta ** (-2.0 * j))
    return total + np.where(width > _DIRECT_TERMS, integral + correction, 0.0)


def estimate_pass_at_k(n, c, k: int):
    r"""Unbiased estimate of pass@k, vectorised over ``n`` and ``c``.

    .. math:: \widehat{\mathrm{pass@}k} = 1 - \frac{\binom{n-c}{k}}{\binom{n}{k}}
              = 1 - \prod_{i=n-c+1}^{n}\Bigl(1 - \frac{k}{i}\Bigr),

    and 1 when :math:`n - c < k`. Relative error below 1e-13 for every
    :math:`n < 2^{63}` (measured against exact integer ratios and mpmath); memory is a few
    arrays of the broadcast shape, whatever ``n``.

    ======  ======================  ==============================================
    Symbol  Shape                   Meaning
    ======  ======================  ==============================================
    n       any, broadcast with c   samples drawn per problem, ``k <= n < 2**63``
    c       any, broadcast with n   correct samples per problem, ``0 <= c <= n``
    k       scalar                  attempts, an integer ``>= 1``
    return  broadcast shape         float64 estimate (a float for scalar input)
    ======  ======================  ==============================================

    ``n`` and ``c`` may be ints, whole-valued floats, arrays or tensors; ``k`` an int or a
    whole-valued float of any NumPy width.

    Raises
    ------
    ValueError
        ``k > n`` (no unbiased estimate exists from fewer than ``k`` samples), ``c`` outside
        ``[0, n]``, ``k < 1``, or a count beyond the int64 range.
    TypeError
        A count that is not a whole number.

    Derived in: chapter 7.
    """
    caller = "estimate_pass_at_k"
    k = _check_order(k, "k")
    n_arr, c_arr, scalar = _validated(n, c, k, "k", caller)
    possible = n_arr - c_arr >= k  # otherwise every k-subset holds a correct sample
    c_safe = np.where(possible, c_arr, 0)
    log_fail = _log_fail_ratio(n_arr, c_safe, np.int64(k))
    estimate = np.where(possible, -np.expm1(log_fail), 1.0) + 0.0  # + 0.0: no -0.0 at c = 0
    return float(estimate) if scalar else estimate


def _fail_ratios_along_k(n, c, last, start: int, width: int) -> np.ndarray:
    r""":math:`r_k` for :math:`k = \mathrm{start}, \dots, \mathrm{start + width - 1}`, shape
    ``(rows, width)``, for column vectors ``n``, ``c``, ``last`` (valid where
    ``k <= last < n - c``; other entries are finite and meaningless).

    Every ``_ANCHOR_EVERY``-th value comes from :func:`_log_fail_ratio`; the ones between
    multiply by the factors :math:`r_{k+1} / r_k = (n - c - k)/(n - k)`, so rounding
    accumulates over at most ``_ANCHOR_EVERY`` factors.
    """
    padded = -(-width // _ANCHOR_EVERY) * _ANCHOR_EVERY
    k = np.minimum(np.arange(start, start + padded, dtype=np.int64)[None, :], last)  # (R, W)
    step = np.minimum(k, last - 1)  # the factor from r_k to r_{k+1}, inside the valid range
    factors = ((n - c - step) / (n - step)).reshape(len(n), -1, _ANCHOR_EVERY)
    anchors = np.exp(_log_fail_ratio(n, c, k[:, ::_ANCHOR_EVERY]))  # (R, W / _ANCHOR_EVERY)
    products = np.ones_like(factors)
    products[..., 1:] = np.cumprod(factors[..., :-1], axis=-1)
    return (anchors[..., None] * products).reshape(len(n), -1)[:, :width]


def _sum_fail_ratios(n: np.ndarray, c: np.ndarray, T: int) -> np.ndarray:
    r""":math:`\sum_{k=1}^{\min(T, n-c)} r_k(n, c) / k` for flat int64 arrays."""
    last = np.minimum(np.int64(T), n - c)  # r_k = 0 beyond n - c
    total = np.zeros(n.shape)
    # closed forms: r_k = 1 when c = 0 (H_T); the whole series is H_n - H_c (chapter 7)
    closed = (c == 0) | (last == n - c)
    upper = np.where(c == 0, last, n)
    total[closed] = _harmonic_difference(upper[closed], np.where(c == 0, 0, c)[closed])
    open_rows = np.flatnonzero(~closed)
    if not open_rows.size:
        return total
    widest = min(_J_BLOCK, int(last[open_rows].max()))
    chunk = max(1, _J_VALUES // (-(-widest // _ANCHOR_EVERY) * _ANCHOR_EVERY))
    for begin in range(0, open_rows.size, chunk):
        rows = open_rows[begin : begin + chunk]
        compensation = np.zeros(rows.size)
        start = 1
        while rows.size:
            width = min(_J_BLOCK, int(last[rows].max()) - start + 1)
            k = np.arange(start, start + width, dtype=np.int64)[None, :]
            last_rows = last[rows, None]
            ratios = _fail_ratios_along_k(n[rows, None], c[rows, None], last_rows, start, width)
            block = np.where(k <= last_rows, ratios / k, 0.0).sum(axis=1)
            # Neumaier summation across blocks: the running total keeps its precision
            running = total[rows] + block
            big = np.abs(total[rows]) >= np.abs(block)
            compensation += np.where(
                big, (total[rows] - running) + block, (block - running) + total[rows]
            )
            total[rows] = running
            # the rest is at most r_K n / (K c) (ratios fall by >= 1 - c/n): stop when tiny
            end = np.minimum(start + width - 1, last[rows])
            ratio_end = np.take_along_axis(ratios, (end - start)[:, None], axis=1)[:, 0]
            tail = ratio_end / end * (n[rows] / c[rows])  # in float: end * c overflows int64
            done = (end >= last[rows]) | (tail < 1e-17 * running)
            total[rows[done]] += compensation[done]
            rows, compensation = rows[~done], compensation[~done]
            start += width
    return total


def estimate_j_maxrl(n, c, T: int):
    r"""Unbiased estimate of the truncated objective :math:`J^{(T)}` from ``n`` samples.

    .. math:: \hat J^{(T)} = -\sum_{k=1}^{T} \frac{1}{k}\,\frac{\binom{n-c}{k}}{\binom{n}{k}},
              \qquad \mathbb{E}\bigl[\hat J^{(T)}\bigr] = -\sum_{k=1}^{T}\frac{(1-p)^k}{k}
              = J^{(T)}(p) \quad (c \sim \mathrm{Binomial}(n, p)).

    Terms with :math:`k > n - c` vanish. For :math:`T \ge n - c` the sum has the closed form
    :math:`-(H_n - H_c)` (harmonic numbers), and for :math:`c = 0` it is :math:`-H_T`; both
    are evaluated without a loop over ``n``. Otherwise the terms are summed in blocks (at most
    4096 terms per entry and about a million values at a time, with compensated summation
    across blocks): every 64th :math:`r_k` as in :func:`estimate_pass_at_k`, the ones between
    by the factors :math:`r_{k+1}/r_k = (n-c-k)/(n-k)`. Summation stops once the remaining
    terms (which fall geometrically, by at least :math:`1 - c/n` each) are below 1e-17 of the
    sum: the work is :math:`O(\min(T, n/c))` per entry and the memory a few arrays of a
    million float64 values, whatever ``n``. Relative error below 1e-13 (measured against
    mpmath).

    ======  ======================  ==============================================
    Symbol  Shape                   Meaning
    ======  ======================  ==============================================
    n       any, broadcast with c   samples drawn (the book's N), ``T <= n < 2**63``
    c       any, broadcast with n   successes among them (the book's K), ``0 <= c <= n``
    T       scalar                  truncation order, an integer ``>= 1``
    return  broadcast shape         float64 estimate, ``<= 0`` (a float for scalar input)
    ======  ======================  ==============================================

    Raises
    ------
    ValueError
        ``T > n`` (no unbiased estimator exists: the expectation of any function of ``c`` is
        a polynomial of degree at most ``n`` in ``p``, and :math:`J^{(T)}` has degree ``T``),
        ``c`` outside ``[0, n]``, ``T < 1``, or a count beyond the int64 range.
    TypeError
        A count that is not a whole number.

    Derived in: chapter 7.
    """
    caller = "estimate_j_maxrl"
    T = _check_order(T, "T")
    n_arr, c_arr, scalar = _validated(n, c, T, "T", caller)
    shape = n_arr.shape
    total = _sum_fail_ratios(n_arr.ravel(), c_arr.ravel(), T).reshape(shape)
    estimate = 0.0 - total  # 0.0 - x: no -0.0 when every sample succeeded
    return float(estimate) if scalar else estimate
