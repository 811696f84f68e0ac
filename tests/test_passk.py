"""Unbiased pass@k: exact against math.comb, unbiasedness over the binomial, errors."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from companion.objectives import pass_at_k
from companion.passk import estimate_pass_at_k


def spec_pass_at_k(n: int, c: int, k: int) -> float:
    """Chen et al.'s definition with exact integers: 1 - C(n-c, k) / C(n, k)."""
    return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))


@st.composite
def n_c_k(draw, max_n=300):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, n))
    c = draw(st.integers(0, n))
    return n, c, k


@given(n_c_k())
def test_matches_exact_combinatorial_definition(case):
    n, c, k = case
    assert estimate_pass_at_k(n, c, k) == pytest.approx(
        spec_pass_at_k(n, c, k), rel=1e-11, abs=1e-13
    )


@given(
    st.integers(1, 64).flatmap(
        lambda n: st.tuples(
            st.just(n), st.lists(st.integers(0, n), min_size=1, max_size=20), st.integers(1, n)
        )
    )
)
def test_vectorised_matches_scalar_loop(case):
    n, counts, k = case
    vectorised = estimate_pass_at_k(n, np.array(counts), k)
    assert vectorised.shape == (len(counts),)
    for value, c in zip(vectorised, counts, strict=True):
        assert value == pytest.approx(estimate_pass_at_k(n, c, k), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("n, k", [(10, 1), (10, 4), (25, 25), (64, 16)])
def test_unbiased_over_the_binomial(n, k):
    for p in [0.01, 0.2, 0.5, 0.93]:
        c = np.arange(n + 1)
        probability = np.array([math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in c])
        expectation = float(probability @ estimate_pass_at_k(n, c, k))
        assert expectation == pytest.approx(pass_at_k(p, k), abs=1e-12)


def test_large_n_stays_accurate():
    # math.comb ratios overflow floats here; the product form does not.
    value = estimate_pass_at_k(5000, 3, 1000)
    assert value == pytest.approx(spec_pass_at_k(5000, 3, 1000), rel=1e-12)
    assert estimate_pass_at_k(np.array([256, 256]), np.array([0, 256]), 256).tolist() == [0, 1]


def test_accepts_tensors_and_arrays_of_n():
    out = estimate_pass_at_k(torch.tensor([8, 16]), torch.tensor([1, 1]), 4)
    np.testing.assert_allclose(out, [spec_pass_at_k(8, 1, 4), spec_pass_at_k(16, 1, 4)])


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((4, 1, 5), ValueError, "n >= k"),
        ((4, 5, 2), ValueError, "0 <= c <= n"),
        ((4, -1, 2), ValueError, "0 <= c <= n"),
        ((4, 1, 0), ValueError, ">= 1"),
        ((4.5, 1, 2), TypeError, "whole numbers"),
        ((np.array([4, 8]), np.array([1.5, 2]), 2), TypeError, "whole numbers"),
        ((4, float("nan"), 2), TypeError, "whole numbers"),
    ],
)
def test_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        estimate_pass_at_k(*args)
