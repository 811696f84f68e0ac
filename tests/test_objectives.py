"""Objectives and weights: loop specs, mpmath references, backends and bad input."""

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.objectives import fail_at_k, j_maxrl, j_ml, j_rl, pass_at_k, weight

mpmath.mp.dps = 60

probabilities = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
open_probabilities = st.floats(min_value=1e-12, max_value=1.0 - 1e-12)


def spec_j_maxrl(p: float, T: int) -> float:
    """Loop spec: -sum_{k=1}^T (1-p)^k / k."""
    return -sum((1.0 - p) ** k / k for k in range(1, T + 1))


def mp_j_maxrl(p: float, T: float) -> mpmath.mpf:
    """High-precision reference; the tail uses the Lerch transcendent for large T."""
    p = mpmath.mpf(p)
    q = 1 - p
    if T == math.inf:
        return mpmath.log(p)
    if T <= 3000:
        return -mpmath.fsum(q**k / k for k in range(1, T + 1))
    return mpmath.log(p) + q ** (T + 1) * mpmath.lerchphi(q, 1, T + 1)


@given(probabilities, st.integers(1, 60))
def test_pass_and_fail_at_k_match_loop_spec(p, k):
    fail = 1.0
    for _ in range(k):
        fail *= 1.0 - p
    assert fail_at_k(p, k) == pytest.approx(fail, rel=1e-12, abs=1e-300)
    assert pass_at_k(p, k) == pytest.approx(1.0 - fail, rel=1e-9, abs=1e-15)


@given(probabilities, st.integers(1, 200))
def test_j_maxrl_matches_loop_spec(p, T):
    assert j_maxrl(p, T) == pytest.approx(spec_j_maxrl(p, T), rel=1e-12, abs=1e-13)


# The Lerch-transcendent reference is too slow for p = 1e-12 with T = 1e9; T = 1e6 covers it.
CASES = [
    (p, T)
    for T in [1, 7, 4096, 4097, 10**5, 10**6, 10**9, math.inf]
    for p in [1e-12, 1e-7, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-9, 1.0]
    if not (T == 10**9 and p < 1e-10)
]


@pytest.mark.parametrize("p, T", CASES)
def test_j_maxrl_against_mpmath(p, T):
    reference = float(mp_j_maxrl(p, T))
    assert j_maxrl(p, T) == pytest.approx(reference, rel=1e-11, abs=1e-15)


@pytest.mark.parametrize("T", [1, 16, 10**6, math.inf])
def test_weight_maxrl_against_mpmath(T):
    for p in [1e-12, 1e-6, 0.01, 0.3, 0.999, 1.0]:
        q = 1 - mpmath.mpf(p)
        reference = 1 / mpmath.mpf(p) if T == math.inf else (1 - q**T) / mpmath.mpf(p)
        assert weight("maxrl", p, T) == pytest.approx(float(reference), rel=1e-12)


def test_j_maxrl_endpoints():
    # T = 1 is RL up to the constant -1; p = 0 gives minus the harmonic number; p = 1 gives 0.
    assert j_maxrl(0.37, 1) == pytest.approx(j_rl(0.37) - 1.0, abs=1e-15)
    assert j_maxrl(0.0, 4) == pytest.approx(-(1 + 1 / 2 + 1 / 3 + 1 / 4))
    assert j_maxrl(1.0, 10**6) == 0.0
    assert j_maxrl(0.0, 10**6) == pytest.approx(-float(mpmath.harmonic(10**6)), rel=1e-12)
    assert j_maxrl(0.25, math.inf) == pytest.approx(math.log(0.25))


@given(open_probabilities, st.integers(1, 50))
def test_weight_is_derivative_of_j_maxrl(p, T):
    # w(p) = dJ^(T)/dp, checked against the derivative of the loop spec by complex-free
    # central differences in mpmath.
    def j(x):
        return -mpmath.fsum((1 - x) ** k / k for k in range(1, T + 1))

    derivative = mpmath.diff(j, mpmath.mpf(p))
    assert weight("maxrl", p, T) == pytest.approx(float(derivative), rel=1e-9)


@given(open_probabilities)
def test_weight_ordering_between_rl_and_ml(p):
    # 1 = w_RL <= w_MaxRL(T) <= w_ML = 1/p, increasing in T.
    previous = weight("rl", p)
    for T in [1, 2, 8, 64]:
        current = weight("maxrl", p, T)
        assert current >= previous * (1 - 1e-12)
        previous = current
    assert previous <= weight("ml", p) * (1 + 1e-12)
    assert weight("grpo", p) == pytest.approx(1 / math.sqrt(p * (1 - p)), rel=1e-12)


def test_backends_keep_their_kind():
    grid = np.array([0.0, 0.1, 1.0])
    assert isinstance(pass_at_k(0.1, 3), float)
    assert isinstance(pass_at_k(grid, 3), np.ndarray)
    tensor = torch.tensor([0.0, 0.1, 1.0], dtype=torch.float32)
    out = j_maxrl(tensor, 8)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), j_maxrl(grid, 8), rtol=1e-6)
    big = j_maxrl(torch.tensor([1e-9, 0.5], dtype=torch.float64), 10**6)
    np.testing.assert_allclose(big.numpy(), j_maxrl(np.array([1e-9, 0.5]), 10**6), rtol=1e-12)
    w = weight("maxrl", torch.tensor([0.0, 0.5]), 4)
    assert torch.allclose(w, torch.tensor([4.0, 1.875]))
    assert pass_at_k(0.1, 3) == pytest.approx(0.271)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: pass_at_k(1.5, 2), ValueError),
        (lambda: pass_at_k(-0.1, 2), ValueError),
        (lambda: pass_at_k(float("nan"), 2), ValueError),
        (lambda: pass_at_k(np.array([0.2, np.inf]), 2), ValueError),
        (lambda: pass_at_k(0.5, 0), ValueError),
        (lambda: pass_at_k(0.5, 2.5), TypeError),
        (lambda: pass_at_k("0.5", 2), TypeError),
        (lambda: j_ml(0.0), ValueError),
        (lambda: j_maxrl(0.5, 0), ValueError),
        (lambda: j_maxrl(0.5, -math.inf), TypeError),
        (lambda: weight("grpo", 1.0), ValueError),
        (lambda: weight("grpo", 0.0), ValueError),
        (lambda: weight("ml", np.array([0.0, 0.5])), ValueError),
        (lambda: weight("maxrl", 0.0, math.inf), ValueError),
        (lambda: weight("maxrl", 0.5), ValueError),
        (lambda: weight("rl", 0.5, 3), ValueError),
        (lambda: weight("ppo", 0.5), ValueError),
        (lambda: pass_at_k(torch.tensor([1, 0]), 2), TypeError),
    ],
)
def test_bad_input_raises_clear_errors(call, error):
    with pytest.raises(error):
        call()


def test_error_messages_say_what_was_expected():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pass_at_k(1.5, 2)
    with pytest.raises(ValueError, match="p = 0"):
        j_ml(0.0)


# ----------------------------------------------------------------- edges: types, sizes, dtypes


@pytest.mark.parametrize(
    "T", [np.float32(16), np.float64(16), np.int64(16), np.int32(16), 16.0, 16]
)
def test_any_real_whole_number_is_a_truncation_level(T):
    assert j_maxrl(0.3, T) == j_maxrl(0.3, 16)
    assert weight("maxrl", 0.3, T) == weight("maxrl", 0.3, 16)
    assert pass_at_k(0.3, T) == pass_at_k(0.3, 16)


@pytest.mark.parametrize(
    "T, error, message",
    [
        (np.float32(2.5), TypeError, "2.5"),
        (float("nan"), TypeError, "nan"),
        (np.float32("nan"), TypeError, "nan"),
        (np.float64(-3), ValueError, ">= 1"),
        (-3, ValueError, ">= 1"),
        (0.0, ValueError, ">= 1"),
        (True, TypeError, "True"),
        (np.bool_(True), TypeError, "True"),
        ("4", TypeError, "'4'"),
        (math.inf, TypeError, "inf"),
    ],
)
def test_truncation_levels_refused_clearly(T, error, message):
    with pytest.raises(error, match=message):
        pass_at_k(0.3, T)  # k does not allow inf
    if T != math.inf:
        with pytest.raises(error, match=message):
            j_maxrl(0.3, T)


def mp_j_maxrl_huge(p: float, T: int) -> mpmath.mpf:
    """J^(T) for T >= 1e300: (1-s)^T = exp(-Ts) up to O(T s^2) <= 1e-300 where it matters, so
    J = -(Ein(T) - Ein(Tp)) with Ein(z) = E1(z) + log z + euler, and Ein(T) = log T + euler."""
    T = mpmath.mpf(T)
    if p == 0:
        return -(mpmath.log(T) + mpmath.euler)
    x = T * mpmath.mpf(p)
    return -(mpmath.log(T) - mpmath.e1(x) - mpmath.log(x))


HUGE_T = [int(1e300), 10**400]
TINY_P = [0.0, 5e-324, 1e-310, 1e-300, 3e-300, 1e-200, 0.5, 1.0]


@pytest.mark.parametrize("T", HUGE_T + [1e300], ids=["int-1e300", "int-1e400", "float-1e300"])
def test_j_maxrl_for_huge_t_on_every_path(T):
    reference = [float(mp_j_maxrl_huge(p, int(T))) for p in TINY_P]
    as_floats = [j_maxrl(p, T) for p in TINY_P]
    as_array = j_maxrl(np.array(TINY_P), T)
    as_tensor = j_maxrl(torch.tensor(TINY_P, dtype=torch.float64), T)
    for got in (np.array(as_floats), as_array, as_tensor.numpy()):
        np.testing.assert_allclose(got, reference, rtol=1e-11, atol=0)
    assert as_floats[-1] == 0.0 and math.copysign(1.0, as_floats[-1]) == 1.0


def test_weight_and_pass_at_k_for_huge_t():
    assert weight("maxrl", 0.25, 10**400) == pytest.approx(4.0, rel=1e-15)
    assert pass_at_k(1e-310, 10**400) == 1.0 and fail_at_k(1e-310, 10**400) == 0.0
    assert pass_at_k(0.0, 10**400) == 0.0
    # T p = 1 beyond float range of T: the log-space product
    assert pass_at_k(1e-300, 10**300) == pytest.approx(-math.expm1(-1.0), rel=1e-12)
    assert weight("maxrl", 0.0, 10**300) == 1e300
    with pytest.raises(OverflowError, match="overflows float64"):
        weight("maxrl", 0.0, 10**400)  # the value at p = 0 is T itself


@pytest.mark.parametrize(
    "T",
    [1, 7, 4096, 4097, 10**6, 10**400, math.inf],
    ids=lambda T: f"{float(T) if T < 1e300 else 1e400:.0e}",
)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)])
def test_empty_input_on_every_path(T, shape):
    array = j_maxrl(np.empty(shape), T) if T != math.inf else j_ml(np.empty(shape))
    assert isinstance(array, np.ndarray) and array.shape == shape
    tensor = j_maxrl(torch.empty(shape, dtype=torch.float32), T)
    assert tensor.shape == shape and tensor.dtype == torch.float32
    assert weight("maxrl", np.empty(shape), T).shape == shape
    assert pass_at_k(torch.empty(shape), 3).shape == shape


@pytest.mark.parametrize("T", [1500, 10**6])
def test_j_maxrl_memory_is_linear_in_the_number_of_pass_rates(T):
    import tracemalloc

    p = np.linspace(1e-6, 1.0, 20_000)
    tracemalloc.start()
    result = j_maxrl(p, T)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Before: 20_000 x 1024 float64 (164 MB) per temporary. Now 8 MB chunks, plus O(numel).
    assert peak < 4 * 8.4e6 + 200 * p.nbytes, peak
    np.testing.assert_allclose(result[[0, -1]], [j_maxrl(1e-6, T), 0.0], rtol=1e-12)


def test_chunks_of_terms_add_up_whatever_their_size():
    from companion import objectives

    p = np.array([1e-9, 0.01, 0.5, 1.0])
    expected = [float(mp_j_maxrl(x, 3000)) for x in p]
    for budget in (1, 7, 1 << 20):
        original, objectives._CHUNK_ELEMENTS = objectives._CHUNK_ELEMENTS, budget
        try:
            np.testing.assert_allclose(j_maxrl(p, 3000), expected, rtol=1e-12)
        finally:
            objectives._CHUNK_ELEMENTS = original


def test_values_that_overflow_their_dtype_raise():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an OverflowError, not numpy's RuntimeWarning
        with pytest.raises(OverflowError, match=r"^weight\('ml'\): the result overflows float64"):
            weight("ml", 1e-310)
        with pytest.raises(OverflowError, match=r"^weight\('maxrl'\): the result overflows"):
            weight("maxrl", np.array([1e-310, 0.5]), math.inf)
        with pytest.raises(OverflowError, match=r"^weight\('maxrl'\): the result overflows"):
            weight("maxrl", 1e-310, 10**400)
    with pytest.raises(OverflowError, match="float16"):
        weight("ml", torch.tensor([1e-5], dtype=torch.float16))
    with pytest.raises(OverflowError, match="float16"):
        weight("maxrl", torch.tensor([0.0], dtype=torch.float16), 10**5)
    # ... while values that fit come back in the input's dtype, computed in float64
    assert weight("ml", torch.tensor([1e-4], dtype=torch.float16)).dtype == torch.float16
    assert weight("grpo", 1e-310) == pytest.approx(1e155, rel=1e-12)


def test_subnormal_float32_pass_rates_are_computed_in_float64():
    tiny = torch.tensor([1e-45, 1e-40], dtype=torch.float32)  # subnormal in float32
    w = weight("maxrl", tiny, 10**9)
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, torch.tensor([1e9, 1e9]), rtol=1e-6, atol=0)
    assert float(pass_at_k(tiny, 10**9)[0]) == pytest.approx(1e9 * float(tiny[0]), rel=1e-6)
    ml = weight("ml", torch.tensor([1e-38], dtype=torch.float32))
    assert float(ml) == pytest.approx(1e38, rel=1e-6)


@pytest.mark.parametrize("T", [8, 10**6])
def test_j_maxrl_autograd_gives_the_weight(T):
    p = torch.tensor([1e-7, 0.01, 0.3, 0.9], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(j_maxrl(p, T).sum(), p)
    torch.testing.assert_close(gradient, weight("maxrl", p.detach(), T), rtol=1e-8, atol=0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: pass_at_k(0.5, 0), r"^k must be >= 1, got 0$"),
        (lambda: fail_at_k(0.5, 2.5), r"^k must be a positive integer, got 2.5$"),
        (lambda: j_maxrl(0.5, -2), r"^T must be >= 1, got -2$"),
        (lambda: j_maxrl(0.5, 1.5), r"^T must be a positive integer or math.inf, got 1.5$"),
        (lambda: weight("maxrl", 0.5, 0), r"^T must be >= 1"),
        (lambda: weight("maxrl", 0.5, -math.inf), r"^T must be a positive integer or math.inf"),
        (lambda: weight("maxrl", 0.5), r"^weight\('maxrl'\) needs the truncation level T"),
        (lambda: j_ml(0.0), r"^j_ml: log p is -inf at p = 0"),
        (lambda: weight("grpo", 1.0), r"^weight\('grpo'\): 1/sqrt\(p\(1-p\)\) is infinite"),
        (lambda: weight("ml", 0.0), r"^weight\('ml'\): 1/p is infinite at p = 0"),
        (lambda: weight("maxrl", 0.0, math.inf), r"^weight\('maxrl'\): 1/p is infinite"),
        (lambda: weight("ppo", 0.5), r"^weight: unknown method 'ppo'"),
        (lambda: weight("ml", 0.5, 3), r"^weight: T is only used by method='maxrl'"),
    ],
)
def test_messages_name_the_culprit(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_no_warning_and_finite_gradient_at_the_end_points():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method, T in [("maxrl", 4), ("maxrl", 10**6), ("rl", None)]:
            weight(method, np.array([0.0, 0.5, 1.0]), T)
        j_maxrl(np.array([0.0, 1.0]), 10**6)
        j_maxrl(np.array([0.0, 1e-300, 1.0]), 10**400)
        pass_at_k(np.array([0.0, 1.0]), 10**400)
    p = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(weight("maxrl", p, 4).sum(), p)
    assert torch.isfinite(gradient).all()


def test_each_kind_comes_back_as_it_came():
    for fn in (
        lambda p: pass_at_k(p, 3),
        lambda p: fail_at_k(p, 3),
        j_rl,
        j_ml,
        lambda p: j_maxrl(p, 5),
        lambda p: j_maxrl(p, 5000),
        lambda p: weight("rl", p),
        lambda p: weight("grpo", p),
        lambda p: weight("ml", p),
        lambda p: weight("maxrl", p, 5),
    ):
        assert type(fn(0.25)) is float
        array = fn(np.array([0.25, 0.5]))
        assert type(array) is np.ndarray and array.dtype == np.float64 and array.shape == (2,)
        tensor = fn(torch.tensor([0.25, 0.5], dtype=torch.bfloat16))
        assert tensor.dtype == torch.bfloat16 and tensor.shape == (2,)
        np.testing.assert_allclose(tensor.float().numpy(), array, rtol=1e-2)
    assert j_rl(0.25) == 0.25 and weight("rl", 0.25) == 1.0


def test_autograd_flows_through_every_objective():
    p = torch.tensor([0.2, 0.7], dtype=torch.float64, requires_grad=True)
    for fn, derivative in [
        (j_rl, lambda x: torch.ones_like(x)),
        (j_ml, lambda x: 1 / x),
        (lambda x: pass_at_k(x, 3), lambda x: 3 * (1 - x) ** 2),
        (lambda x: fail_at_k(x, 3), lambda x: -3 * (1 - x) ** 2),
    ]:
        (gradient,) = torch.autograd.grad(fn(p).sum(), p)
        torch.testing.assert_close(gradient, derivative(p.detach()))


def _autograd(fn, values, dtype=torch.float64, create_graph=False):
    p = torch.tensor(values, dtype=dtype, requires_grad=True)
    (gradient,) = torch.autograd.grad(fn(p).sum(), p, create_graph=create_graph)
    return p, gradient


def _series_derivative(p: float, T: int) -> float:
    """w'(p) = -sum_{k=1}^{T-1} k (1-p)^(k-1), summed in exact rationals (a loop spec)."""
    from fractions import Fraction

    q = 1 - Fraction(p)
    return float(-sum(k * q ** (k - 1) for k in range(1, T)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_autograd_of_pass_and_fail_at_k_is_exact_at_the_end_points(k, dtype):
    # d/dp pass@k = k (1-p)^(k-1): k at p = 0; 1 (k = 1) or 0 at p = 1. Through log1p(-p)
    # autograd would meet 0 * inf at p = 1 and return NaN.
    values = [0.0, 0.5, 1.0]
    expected = torch.tensor([k * (1 - x) ** (k - 1) for x in values], dtype=dtype)
    _, gradient = _autograd(lambda p: pass_at_k(p, k), values, dtype)
    torch.testing.assert_close(gradient, expected, rtol=1e-6, atol=0)
    _, gradient = _autograd(lambda p: fail_at_k(p, k), values, dtype)
    torch.testing.assert_close(gradient, -expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "T", [1, 2, 8, 4096, 4097, 10**6, 10**300], ids=["1", "2", "8", "4096", "4097", "1e6", "1e300"]
)
def test_autograd_of_j_maxrl_is_the_weight_everywhere(T):
    # dJ/dp = w(p) = (1-(1-p)^T)/p: T at p = 0, 1 at p = 1, and exact where the integral form
    # switches pieces (T p = 1e-9, where differentiating the pieces counted the edge twice)
    # and at tiny p (where differentiating the quadrature lost seven digits).
    values = [0.0, 1e-300, 1e-9 / T, 1e-12, 0.5, 1.0]
    _, gradient = _autograd(lambda p: j_maxrl(p, T), values)
    with mpmath.workdps(50):
        exact = [
            1.0 if x == 1.0 else float(-mpmath.expm1(T * mpmath.log1p(-mpmath.mpf(x))) / x)
            for x in values[1:]
        ]
    assert float(gradient[0]) == float(T)
    torch.testing.assert_close(
        gradient[1:], torch.tensor(exact, dtype=torch.float64), rtol=1e-12, atol=0
    )


@pytest.mark.parametrize("T", [1, 2, 4, 8, 50])
def test_autograd_of_weight_maxrl_is_exact_at_the_end_points(T):
    # w'(p) = -sum_{k<T} k (1-p)^(k-1): -T(T-1)/2 at p = 0, -1 at p = 1 (0 when T = 1).
    values = [0.0, 0.3, 1.0]
    _, gradient = _autograd(lambda p: weight("maxrl", p, T), values)
    expected = torch.tensor([_series_derivative(x, T) for x in values], dtype=torch.float64)
    torch.testing.assert_close(gradient, expected, rtol=1e-12, atol=1e-12)
    # j_maxrl's second derivative is the weight's derivative.
    p, first = _autograd(lambda p: j_maxrl(p, T), values, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), p)
    torch.testing.assert_close(second, expected, rtol=1e-12, atol=1e-12)


def test_a_derivative_beyond_float64_raises():
    p = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    value = j_maxrl(p, 10**400)  # the value at p = 0 is -H_T, finite
    assert math.isfinite(float(value[0].detach()))
    with pytest.raises(OverflowError, match=r"^j_maxrl: the derivative at p = 0"):
        value.sum().backward()
    with pytest.raises(OverflowError, match=r"^weight\('maxrl'\): the derivative at p = 0"):
        weight("maxrl", p, 10**200)  # -T(T-1)/2 = -5e399 at p = 0
    assert float(weight("maxrl", p.detach(), 10**200)[1]) == 2.0  # without grad: no derivative
