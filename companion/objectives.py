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


def _xp(value):
    return torch if isinstance(value, torch.Tensor) else np


def _out(value, kind: str):
    return float(value) if kind == "float" else value


def _log_fail(p, xp):
    """``log(1 - p)`` computed with ``log1p`` so that tiny ``p`` keeps its precision.

    ``p = 1`` gives ``-inf`` on purpose: every caller feeds it to ``exp``/``expm1``.
    """
    if xp is np:
        with np.errstate(divide="ignore"):
            return np.log1p(-p)
    return torch.log1p(-p)


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
    return _out(-xp.expm1(k * _log_fail(value, xp)), kind)


def fail_at_k(p: PassRate, k: int) -> PassRate:
    r"""Probability that ``k`` independent attempts all fail: :math:`(1-p)^k`.

    Derived in: chapter 2.
    """
    value, kind = check_probability(p)
    k = check_positive_int(k, "k")
    xp = _xp(value)
    return _out(xp.exp(k * _log_fail(value, xp)), kind)


def j_rl(p: PassRate) -> PassRate:
    r"""The reinforcement-learning objective :math:`J_{RL} = p` (pass@1).

    Derived in: chapter 1.
    """
    value, kind = check_probability(p)
    return _out(value * 1.0, kind)


def j_ml(p: PassRate) -> PassRate:
    r"""The maximum-likelihood objective :math:`J_{ML} = \log p`.

    Raises ``ValueError`` where ``p = 0`` (the objective is :math:`-\infty` there).

    Derived in: chapter 1.
    """
    value, kind = check_probability(p)
    xp = _xp(value)
    if bool((value == 0).any()):
        raise ValueError("j_ml: log p is -inf at p = 0; expected p in (0, 1]")
    return _out(xp.log(value), kind)


def _gauss_legendre(xp, like):
    nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_NODES)
    if xp is torch:
        return (
            torch.as_tensor(nodes, dtype=torch.float64, device=like.device),
            torch.as_tensor(weights, dtype=torch.float64, device=like.device),
        )
    return nodes, weights


def _truncated_log_direct(p, T: int, xp):
    """:math:`-\\sum_{k=1}^T (1-p)^k/k` term by term, in chunks of 1024 terms."""
    log_q = _log_fail(p, xp)[..., None]
    total = xp.zeros_like(p)
    for start in range(1, T + 1, 1024):
        stop = min(T, start + 1023)
        if xp is torch:
            k = torch.arange(start, stop + 1, dtype=p.dtype, device=p.device)
        else:
            k = np.arange(start, stop + 1, dtype=np.float64)
        total = total - (xp.exp(k * log_q) / k).sum(-1)
    return total


def _truncated_log_integral(p, T: int, xp):
    r"""The same sum for large ``T``, by the integral

    .. math:: \sum_{k=1}^T \frac{(1-p)^k}{k} = \int_p^1 \frac{1 - (1-s)^T}{s}\,ds
              = \int_{\log p}^{0} \bigl(1 - (1 - e^v)^T\bigr)\,dv,

    split at :math:`s_0 = 10^{-9}/T`. Below it :math:`1-(1-s)^T = Ts - \binom{T}{2}s^2 +
    O((Ts)^3)`, integrated in closed form; above it composite Gauss-Legendre in
    :math:`v = \log s` on panels of width 1/2 (the integrand is smooth and bounded by 1).
    """
    log_s0 = math.log(1e-9 / T)
    s0 = math.exp(log_s0)
    if xp is torch:
        low = torch.log(p.clamp_min(1e-300)).clamp_min(log_s0)
        p_small = p.clamp_max(s0)
    else:
        low = np.maximum(np.log(np.maximum(p, 1e-300)), log_s0)
        p_small = np.minimum(p, s0)
    # Closed form on [p, s0] (zero where p >= s0).
    series = T * (s0 - p_small) - T * (T - 1) / 4.0 * (s0**2 - p_small**2)
    # Composite Gauss-Legendre on [low, 0] in v = log s, the same panel count for every entry.
    nodes, weights = _gauss_legendre(xp, p)
    length = -low
    panels = max(1, math.ceil(float(length.max()) / 0.5)) if length.shape != (0,) else 1
    width = length / panels
    total = xp.zeros_like(p)
    for j in range(panels):
        v = (low + j * width)[..., None] + (nodes + 1.0) / 2.0 * width[..., None]
        integrand = -xp.expm1(T * _log_fail(xp.exp(v), xp))
        total = total + (integrand * weights).sum(-1) * width / 2.0
    return -(total + series)


def j_maxrl(p: PassRate, T: int | float) -> PassRate:
    r"""The truncated maximum-likelihood objective of order ``T``.

    .. math:: J^{(T)}_{\mathrm{MaxRL}}(p) = -\sum_{k=1}^{T} \frac{(1-p)^k}{k}
              = -\sum_{k=1}^{T} \frac{\mathrm{fail@}k}{k}

    ``T = 1`` gives :math:`p - 1` (RL up to a constant); ``T = math.inf`` gives
    :math:`\log p` (ML). At ``p = 0`` the value is :math:`-H_T` (finite for finite ``T``).
    Stable for ``p`` down to 1e-300 and ``T`` up to 1e9: the sum is taken term by term up to
    ``T = 4096`` and by a quadrature of its integral form beyond.

    Parameters
    ----------
    p : float, ndarray or Tensor, any shape
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
    work = value.double() if xp is torch else value
    if T <= _DIRECT_SUM_MAX_T:
        result = _truncated_log_direct(work, T, xp)
    else:
        result = _truncated_log_integral(work, T, xp)
    result = result + 0.0  # no negative zero at p = 1
    if xp is torch:
        result = result.to(value.dtype)
    return _out(result, kind)


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
    ``"maxrl"`` at ``p = 0`` returns its finite limit ``T``.

    Derived in: chapter 3.
    """
    value, kind = check_probability(p)
    xp = _xp(value)
    if method != "maxrl" and T is not None:
        raise ValueError(f"weight: T is only used by method='maxrl', got T={T!r} for {method!r}")
    if method == "rl":
        return _out(xp.ones_like(value), kind)
    if method == "grpo":
        if bool(((value == 0) | (value == 1)).any()):
            raise ValueError(
                "weight('grpo'): 1/sqrt(p(1-p)) is infinite at p = 0 and p = 1; "
                "expected p in (0, 1)"
            )
        return _out(1.0 / xp.sqrt(value * (1.0 - value)), kind)
    if method == "ml" or (method == "maxrl" and T == math.inf):
        if method == "maxrl":
            check_positive_int(T, "T", allow_inf=True)
        if bool((value == 0).any()):
            raise ValueError(f"weight({method!r}): 1/p is infinite at p = 0; expected p in (0, 1]")
        return _out(1.0 / value, kind)
    if method == "maxrl":
        if T is None:
            raise ValueError("weight('maxrl') needs the truncation level T (int >= 1 or math.inf)")
        T = check_positive_int(T, "T", allow_inf=True)
        safe = xp.where(value == 0, xp.ones_like(value), value)
        w = -xp.expm1(T * _log_fail(value, xp)) / safe
        return _out(xp.where(value == 0, xp.full_like(value, float(T)), w), kind)
    raise ValueError(f"weight: unknown method {method!r}; expected 'rl', 'grpo', 'maxrl' or 'ml'")
