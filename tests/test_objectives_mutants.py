"""Objectives: properties that mutation testing found unchecked (end points under autograd,
overflow messages, huge truncation levels, counts near float64's limit, CUDA)."""

import math

import mpmath
import pytest
import torch

from companion.objectives import fail_at_k, j_maxrl, pass_at_k, weight

END_POINT_CALLS = [
    ("pass_at_k k=1", lambda p: pass_at_k(p, 1)),
    ("pass_at_k k=3", lambda p: pass_at_k(p, 3)),
    ("fail_at_k k=1", lambda p: fail_at_k(p, 1)),
    ("fail_at_k k=3", lambda p: fail_at_k(p, 3)),
    ("weight T=1", lambda p: weight("maxrl", p, 1)),
    ("weight T=4", lambda p: weight("maxrl", p, 4)),
    # T is not a float32 number: the value at p = 0 must stay float64 (T itself)
    ("weight T=1e8+1", lambda p: weight("maxrl", p, 10**8 + 1)),
    ("j_maxrl T=8", lambda p: j_maxrl(p, 8)),
]


@pytest.mark.parametrize("values", [[0.0, 0.5, 1.0], [0.0], [1.0], [1.0, 1.0]])
@pytest.mark.parametrize(
    "fn", [fn for _, fn in END_POINT_CALLS], ids=[n for n, _ in END_POINT_CALLS]
)
def test_values_with_autograd_equal_values_without(fn, values):
    # The end-point treatment for autograd changes derivatives, never values; also for a
    # tensor that holds only end points.
    plain = fn(torch.tensor(values, dtype=torch.float64))
    tracked = fn(torch.tensor(values, dtype=torch.float64, requires_grad=True))
    torch.testing.assert_close(tracked.detach(), plain, rtol=1e-15, atol=0)


@pytest.mark.parametrize("fn, sign", [(pass_at_k, 1.0), (fail_at_k, -1.0)])
def test_end_point_derivative_for_a_count_beyond_1e300(fn, sign):
    # k log(1 - p) is taken in log space beyond 1e300, where autograd meets 0 * inf at p = 0;
    # the derivative there is still +-k.
    p = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(fn(p, 10**305).sum(), p)
    assert gradient.tolist() == [sign * 1e305, 0.0]


@pytest.mark.parametrize("fn, name", [(pass_at_k, "pass_at_k"), (fail_at_k, "fail_at_k")])
def test_derivative_overflow_names_the_function(fn, name):
    p = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    with pytest.raises(OverflowError, match=rf"^{name}: the derivative at p = 0 does not fit"):
        fn(p, 10**400)  # d/dp at p = 0 is +-k = +-1e400


def test_j_maxrl_overflow_of_the_dtype_names_the_function():
    # |J| = H_T ~ log T = 69078 at T = 10**30000: beyond float16's 65504.
    with pytest.raises(OverflowError, match=r"^j_maxrl: a value of magnitude .* torch.float16"):
        j_maxrl(torch.tensor([0.0], dtype=torch.float16), 10**30000)
    assert j_maxrl(0.0, 10**30000) == pytest.approx(-(30000 * math.log(10) + 0.5772156649))


@pytest.mark.parametrize("T", [10**11, 10**12])
def test_j_maxrl_at_zero_is_minus_the_harmonic_number_for_large_t(T):
    # Here s = e^u / T < 1e-10 over the whole quadrature, so rho = 1 + s/2 carries the
    # integrand; the result is -H_T to float64 rounding (measured: within one ulp).
    assert j_maxrl(0.0, T) == pytest.approx(-float(mpmath.harmonic(T)), rel=1e-14)


def test_counts_up_to_float64s_limit_are_finite():
    # 1.5e308 fits in float64: the value of weight('maxrl') at p = 0 is T itself, and
    # pass@k's derivative at p = 0 is k. Beyond float64 (2e308) both raise.
    big = 15 * 10**307
    assert weight("maxrl", 0.0, big) == 1.5e308
    p = torch.tensor([0.0, 0.5], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(pass_at_k(p, big).sum(), p)
    assert gradient.tolist() == [1.5e308, 0.0]
    with pytest.raises(OverflowError, match="overflows float64"):
        weight("maxrl", 0.0, 2 * 10**308)
    with pytest.raises(OverflowError, match="derivative at p = 0"):
        pass_at_k(p, 2 * 10**308)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("T", [8, 10**6, 10**400])
def test_cuda_results_stay_on_the_device_and_match_the_cpu(T):
    cpu = torch.tensor([0.0, 1e-300, 1e-7, 0.3, 1.0], dtype=torch.float64)
    for requires_grad in (False, True):
        gpu = cpu.cuda().requires_grad_(requires_grad)
        for fn in (lambda p: j_maxrl(p, T), lambda p: pass_at_k(p, 3)):
            out = fn(gpu)
            assert out.device == gpu.device
            torch.testing.assert_close(out.detach().cpu(), fn(cpu), rtol=1e-12, atol=0)
        if requires_grad:
            (gradient,) = torch.autograd.grad(pass_at_k(gpu, 3).sum(), gpu)
            assert gradient.device == gpu.device
