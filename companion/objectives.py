r"""Closed-form objectives and weight functions of a pass rate :math:`p`.

Every function takes a pass rate ``p`` as a Python float, a NumPy array or a torch tensor and
returns the same kind (a float, a float64 array, or a tensor of the input's dtype and device).
``p`` must be finite and lie in [0, 1]; values at which a quantity is infinite (``log 0``,
``1/0``) raise ``ValueError`` instead of returning ``-inf`` or ``inf``.

Notation (chapter 1): :math:`q = 1 - p` is the failure probability of one attempt.

=================  ==========================================  ==========
function           formula                                     chapter
=================  ==========================================  ==========
``pass_at_k``      :math:`1 - (1-p)^k`                          2
``fail_at_k``      :math:`(1-p)^k`                              2
``j_rl``           :math:`p`                                    1
``j_ml``           :math:`\log p`                               1
``j_maxrl``        :math:`-\sum_{k=1}^{T} (1-p)^k / k`          1, 3
``weight``         :math:`w(p)` with :math:`\nabla J = w(p)\nabla p`  3
=================  ==========================================  ==========
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
import torch

from companion._checks import check_positive_int, check_probability

PassRate = TypeVar("PassRate", float, np.ndarray, torch.Tensor)

#: Truncation levels up to this value are summed term by term; larger ones are integrated.
_DIRECT_SUM_MAX_T = 4096
_GAUSS_NODES = 20
_PANELS = 50
#: The term-by-term sum holds at most this many values at once (8 MB in float64).
_CHUNK_ELEMENTS = 1 << 20


def _xp(value):
    return torch if isinstance(value, torch.Tensor) else np


def _wide(value):
    """The working copy: float64 (a tensor stays on its device; arrays already are float64)."""
    return value.double() if isinstance(value, torch.Tensor) else value


def _out(result, kind: str, like, name: str):
    """Return ``result`` (float64) as the caller's kind: a float, a float64 ndarray, or a
    tensor of the input's dtype. ``OverflowError`` where a finite value does not fit."""
    if kind == "torch":
        out = result.to(like.dtype)
        if not bool(torch.isfinite(out).all()):
            raise OverflowError(
                f"{name}: a value of magnitude {float(result.abs().max()):g} does not fit in "
                f"{like.dtype}; pass float64 input"
            )
        return out
    if not np.isfinite(result).all():
        raise OverflowError(f"{name}: the result overflows float64")
    return float(result) if kind == "float" else result


def _log_fail(p, xp):
    """``log(1 - p)`` computed with ``log1p`` so that tiny ``p`` keeps its precision.

    ``p = 1`` gives ``-inf`` on purpose: every caller feeds it to ``exp``/``expm1``.
    """
    if xp is np:
        with np.errstate(divide="ignore"):
            return np.log1p(-p)
    return torch.log1p(-p)


def _times(count: int, log_fail, xp):
    """``count * log(1 - p)`` for any positive int ``count``, even beyond float range.

    Below 1e300 a plain product; above, ``-exp(log count + log(-log(1 - p)))`` (the product
    itself would overflow the conversion of ``count`` to a float).
    """
    if count < 1e300:
        return float(count) * log_fail
    with np.errstate(divide="ignore"):
        return -xp.exp(math.log(count) + xp.log(-log_fail))


def _float(count: int) -> float:
    """``count >= 0`` as a float, ``inf`` beyond float64's range (``2 * 10**308``)."""
    try:
        return float(count)
    except OverflowError:
        return math.inf


def _with_end_points(work, compute, slopes: dict[float, float], name: str):
    r"""``compute(work)``, with a first derivative autograd gets right at ``p = 0`` and ``1``.

    Through ``log1p(-p)`` autograd meets ``0 * inf`` at ``p = 1`` and returns NaN, although
    the one-sided derivative is finite. For a tensor that requires grad, the end points go to
    ``compute`` as 1/2 and come back as ``value + slopes[end] * (p - end)``, with ``value``
    ``compute``'s own. Other inputs are untouched.
    """
    if not (isinstance(work, torch.Tensor) and work.requires_grad):
        return compute(work)
    result = compute(torch.where((work == 0) | (work == 1), torch.full_like(work, 0.5), work))
    for end, slope in slopes.items():
        if bool((work == end).any()):
            if not math.isfinite(slope):
                raise OverflowError(
                    f"{name}: the derivative at p = {end:g} does not fit in float64"
                )
            value = compute(torch.full((1,), end, dtype=torch.float64, device=work.device))
            result = torch.where(work == end, value + slope * (work - end), result)
    return result


def pass_at_k(p: PassRate, k: int) -> PassRate:
    r"""Probability that at least one of ``k`` independent attempts succeeds.

    .. math:: \mathrm{pass@}k(p) = 1 - (1 - p)^k = -\operatorname{expm1}(k \log(1 - p))

    Parameters
    ----------
    p : float, ndarray or Tensor, any shape
        Pass rate of a single attempt, in [0, 1].
    k : int
        Number of attempts, ``k >= 1``.

    Derived in: chapter 2.
    """
    value, kind = check_probability(p)
    k = check_positive_int(k, "k")
    xp = _xp(value)
    result = _with_end_points(
        _wide(value),
        lambda work: -xp.expm1(_times(k, _log_fail(work, xp), xp)),
        {0.0: _float(k), 1.0: 1.0 if k == 1 else 0.0},
        "pass_at_k",
    )
    return _out(result, kind, value, "pass_at_k")


def fail_at_k(p: PassRate, k: int) -> PassRate:
    r"""Probability that ``k`` independent attempts all fail: :math:`(1-p)^k`.

    Derived in: chapter 2.
    """
    value, kind = check_probability(p)
    k = check_positive_int(k, "k")
    xp = _xp(value)
    result = _with_end_points(
        _wide(value),
        lambda work: xp.exp(_times(k, _log_fail(work, xp), xp)),
        {0.0: -_float(k), 1.0: -1.0 if k == 1 else 0.0},
        "fail_at_k",
    )
    return _out(result, kind, value, "fail_at_k")


def j_rl(p: PassRate) -> PassRate:
    r"""The reinforcement-learning objective :math:`J_{RL} = p` (pass@1).

    Derived in: chapter 1.
    """
    value, kind = check_probability(p)
    return _out(_wide(value) * 1.0, kind, value, "j_rl")


def j_ml(p: PassRate) -> PassRate:
    r"""The maximum-likelihood objective :math:`J_{ML} = \log p`.

    Raises ``ValueError`` where ``p = 0`` (the objective is :math:`-\infty` there).

    Derived in: chapter 1.
    """
    value, kind = check_probability(p)
    xp = _xp(value)
    if bool((value == 0).any()):
        raise ValueError("j_ml: log p is -inf at p = 0; expected p in (0, 1]")
    return _out(xp.log(_wide(value)), kind, value, "j_ml")


def _gauss_legendre(xp, like):
    nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_NODES)
    if xp is torch:
        return (
            torch.as_tensor(nodes, dtype=torch.float64, device=like.device),
            torch.as_tensor(weights, dtype=torch.float64, device=like.device),
        )
    return nodes, weights


def _numel(value) -> int:
    return value.numel() if isinstance(value, torch.Tensor) else int(np.size(value))


def _truncated_log_direct(p, T: int, xp):
    r""":math:`-\sum_{k=1}^T (1-p)^k/k` term by term, a chunk of ``k`` at a time.

    A chunk holds at most ``_CHUNK_ELEMENTS`` values, so the memory is O(numel) for any
    ``T``, and few chunks (fast) for few pass rates.
    """
    log_q = _log_fail(p, xp)[..., None]
    total = xp.zeros_like(p)
    step = max(1, min(T, _CHUNK_ELEMENTS // max(1, _numel(p))))
    for start in range(1, T + 1, step):
        stop = min(T, start + step - 1)
        if xp is torch:
            k = torch.arange(start, stop + 1, dtype=p.dtype, device=p.device)
        else:
            k = np.arange(start, stop + 1, dtype=np.float64)
        total = total - (xp.exp(k * log_q) / k).sum(-1)
    return total


def _truncated_log_integral(p, T: int, xp):
    r"""The same sum for large ``T``, by the integral

    .. math:: \sum_{k=1}^T \frac{(1-p)^k}{k} = \int_p^1 \frac{1 - (1-s)^T}{s}\,ds
              = \int_{\log Tp}^{\log T} \bigl(1 - (1 - e^u/T)^T\bigr)\,du
              \quad (s = e^u / T),

    split where :math:`Ts = 10^{-9}` and :math:`Ts = 50`. Below the first,
    :math:`1-(1-s)^T = Ts - \binom{T}{2}s^2 + O((Ts)^3)`, integrated in closed form. Above
    the second, :math:`(1-s)^T \le e^{-Ts} < e^{-50}`, so the integrand is 1 and that piece is
    its length. In between (:math:`u` in an interval of length 24.6 whatever ``T`` is),
    composite Gauss-Legendre on 50 panels, with :math:`T\log(1-s) = -e^u \rho(s)`,
    :math:`\rho(s) = -\log(1-s)/s`, so ``T`` only enters through :math:`\log T` and may be
    any size (``10**400``). Memory O(numel).
    """
    log_T = math.log(T)
    u_low, u_high = math.log(1e-9), math.log(50.0)
    with np.errstate(divide="ignore"):
        log_p = xp.log(p)  # -inf at p = 0
    # Length of the flat piece: v = log s from max(log p, log(50/T)) to 0.
    flat = _clip(-log_p, None, log_T - u_high, xp)
    # Closed form on [p, 1e-9/T] in x = T min(p, 1e-9/T), which lies in [0, 1e-9].
    # T p (capped before exp when T is huge: nothing overflows, no inf reaches autograd)
    scaled = float(T) * p if T < 1e300 else xp.exp(_clip(log_p + log_T, None, -20.0, xp))
    x = _clip(scaled, None, 1e-9, xp)
    series = (1e-9 - x) * (1.0 + math.expm1(-log_T) / 4.0 * (1e-9 + x))  # expm1 = -(1 - 1/T)
    # Gauss-Legendre on [start, u_high] in u, empty (width 0) where T p >= 50.
    start = _clip(log_p + log_T, u_low, u_high, xp)
    width = (u_high - start) / _PANELS
    nodes, weights = _gauss_legendre(xp, p)
    quadrature = xp.zeros_like(p)
    for j in range(_PANELS):
        u = (start + j * width)[..., None] + (nodes + 1.0) / 2.0 * width[..., None]
        s = xp.exp(u - log_T)  # <= 50/4097, and 0 once T is beyond float range
        tiny = s < 1e-10
        s_safe = xp.where(tiny, xp.full_like(s, 0.5), s)
        rho = xp.where(tiny, 1.0 + s / 2.0, -xp.log1p(-s_safe) / s_safe)  # 1 + s/2 + O(s^2)
        integrand = -xp.expm1(-xp.exp(u) * rho)
        quadrature = quadrature + (integrand * weights).sum(-1) * width / 2.0
    return -(series + quadrature + flat)


def _truncated_log(p, T: int, xp):
    """:math:`J^{(T)}(p)` in float64: term by term up to ``T = 4096``, by quadrature beyond."""
    if T <= _DIRECT_SUM_MAX_T:
        return _truncated_log_direct(p, T, xp)
    return _truncated_log_integral(p, T, xp)


class _TruncatedLog(torch.autograd.Function):
    r"""``j_maxrl`` with the derivative :math:`w(p)` itself (chapter 3), exact at p = 0 and 1."""

    @staticmethod
    def forward(ctx, p, T):
        ctx.T = T
        ctx.save_for_backward(p)
        return _truncated_log(p, T, torch)

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        slope = _maxrl_weight(p if torch.is_grad_enabled() else p.detach(), ctx.T, torch)
        if not bool(torch.isfinite(slope).all()):
            raise OverflowError("j_maxrl: the derivative at p = 0, T, does not fit in float64")
        return grad * slope, None


def _maxrl_weight(work, T: int, xp):
    """``(1 - (1-p)^T)/p`` in float64, ``T`` at ``p = 0``; differentiable at both end points."""
    limit = _float(T)  # the value at p = 0; inf: OverflowError in the caller

    def compute(work):
        safe = xp.where(work == 0, xp.ones_like(work), work)
        with np.errstate(over="ignore"):
            w = -xp.expm1(_times(T, _log_fail(work, xp), xp)) / safe
        return xp.where(work == 0, xp.full_like(work, limit), w)

    # w = sum_{k<T} (1-p)^k: slope -T(T-1)/2 at p = 0, -1 at p = 1 (0 when T = 1).
    slopes = {0.0: -_float(T * (T - 1) // 2), 1.0: -1.0 if T >= 2 else 0.0}
    return _with_end_points(work, compute, slopes, "weight('maxrl')")


def _clip(value, low, high, xp):
    if xp is torch:
        return torch.clamp(value, min=low, max=high)
    return np.clip(value, low, high)


def j_maxrl(p: PassRate, T: int | float) -> PassRate:
    r"""The truncated maximum-likelihood objective of order ``T``.

    .. math:: J^{(T)}_{\mathrm{MaxRL}}(p) = -\sum_{k=1}^{T} \frac{(1-p)^k}{k}
              = -\sum_{k=1}^{T} \frac{\mathrm{fail@}k}{k}

    ``T = 1`` gives :math:`p - 1` (RL up to a constant); ``T = math.inf`` gives
    :math:`\log p` (ML). At ``p = 0`` the value is :math:`-H_T` (finite for finite ``T``).
    Stable for ``p`` down to 1e-300 and any ``T`` (``1e300``, ``10**400``): the sum is taken
    term by term up to ``T = 4096`` and by a quadrature of its integral form beyond, both in
    O(numel) memory and in float64 (a tensor result is rounded back to its dtype). Autograd
    gives the derivative :math:`w(p)` of ``weight("maxrl", p, T)`` itself, exact at ``p = 0``
    (``T``) and ``p = 1`` (1).

    Parameters
    ----------
    p : float, ndarray or Tensor, any shape (empty too)
        Pass rate in [0, 1].
    T : int >= 1 or math.inf
        Truncation level; an unbiased estimator from ``N`` samples reaches ``T = N``.

    Derived in: chapter 1 (definition), chapter 3 (gradient).
    """
    value, kind = check_probability(p)
    T = check_positive_int(T, "T", allow_inf=True)
    if T == math.inf:
        return j_ml(p)
    xp = _xp(value)
    work = _wide(value)
    if _numel(work) == 0:
        result = work * 0.0
    elif xp is torch and work.requires_grad:
        result = _TruncatedLog.apply(work, T)
    else:
        result = _truncated_log(work, T, xp)
    return _out(result + 0.0, kind, value, "j_maxrl")  # + 0.0: no negative zero at p = 1


Method = Literal["rl", "grpo", "maxrl", "ml"]


def weight(method: Method, p: PassRate, T: int | float | None = None) -> PassRate:
    r"""Weight :math:`w(p)` of a method's population gradient :math:`\nabla J = w(p)\,\nabla p`.

    ==========  ==============================================  ================================
    method      :math:`w(p)`                                    objective
    ==========  ==============================================  ================================
    ``"rl"``    :math:`1`                                       :math:`p`
    ``"grpo"``  :math:`1/\sqrt{p(1-p)}`                         :math:`2\arcsin\sqrt{p}`
    ``"maxrl"`` :math:`(1-(1-p)^T)/p = \sum_{k=1}^{T}(1-p)^{k-1}`  :math:`J^{(T)}_{\mathrm{MaxRL}}`
    ``"ml"``    :math:`1/p`                                     :math:`\log p`
    ==========  ==============================================  ================================

    The GRPO weight is the large-N limit (population standard deviation
    :math:`\sqrt{p(1-p)}`); it is infinite at ``p = 0`` and ``p = 1``, which raise
    ``ValueError``, as does ``p = 0`` for ``"ml"`` and for ``"maxrl"`` with ``T = math.inf``.
    ``"maxrl"`` at ``p = 0`` returns its finite limit ``T``. Computed in float64; a value
    that does not fit the result's dtype (``1/p`` at ``p = 1e-310``, or float16 input) raises
    ``OverflowError`` instead of returning inf.

    Autograd through ``weight("maxrl")`` is exact at ``p = 0`` (:math:`-T(T-1)/2`) and ``p = 1``
    (-1; 0 if ``T = 1``); in between, ``-expm1(T log1p(-p)) / p`` cancels when ``T p`` is small:
    relative error about 1e-12 at ``T p = 1e-4``, up to 1e-6 at 1e-10, none right for p < 1e-154.

    Derived in: chapter 3.
    """
    value, kind = check_probability(p)
    xp = _xp(value)
    work = _wide(value)
    name = f"weight({method!r})"
    if method != "maxrl" and T is not None:
        raise ValueError(f"weight: T is only used by method='maxrl', got T={T!r} for {method!r}")
    if method == "rl":
        return _out(xp.ones_like(work), kind, value, name)
    if method == "grpo":
        if bool(((value == 0) | (value == 1)).any()):
            raise ValueError(
                "weight('grpo'): 1/sqrt(p(1-p)) is infinite at p = 0 and p = 1; "
                "expected p in (0, 1)"
            )
        return _out(1.0 / xp.sqrt(work * (1.0 - work)), kind, value, name)
    if method == "ml" or (method == "maxrl" and T == math.inf):
        if bool((value == 0).any()):
            raise ValueError(f"weight({method!r}): 1/p is infinite at p = 0; expected p in (0, 1]")
        with np.errstate(over="ignore"):
            return _out(1.0 / work, kind, value, name)
    if method == "maxrl":
        if T is None:
            raise ValueError("weight('maxrl') needs the truncation level T (int >= 1 or math.inf)")
        T = check_positive_int(T, "T", allow_inf=True)
        return _out(_maxrl_weight(work, T, xp), kind, value, name)
    raise ValueError(f"weight: unknown method {method!r}; expected 'rl', 'grpo', 'maxrl' or 'ml'")
