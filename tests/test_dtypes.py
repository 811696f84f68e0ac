"""Every estimator in every floating dtype, groups of 2 to 1e5 samples, against float64.

Property: the result equals the float64 computation (rounded to the input's dtype) within that
dtype's precision, or the call refuses with an ``OverflowError`` exactly when a true value does
not fit in the dtype. Never zeros, NaN or inf where the true answer is finite.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.estimators import ADVANTAGES

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
BINARY_ONLY = {"maxrl", "maxrl_divide_by_k", "maxrl_control_variate"}
#: Computed by the plain formula (bit for bit as before on 0/1 rewards): error relative to |r|.
LINEAR = {"rloo", "dr_grpo"}


@st.composite
def reward_batches(draw, binary: bool):
    """Rewards (P, N) with N log-uniform in [2, 1e5] (so few huge groups), a random pass rate,
    and for real-valued estimators an affine map of the 0/1 outcomes (any scale and offset)."""
    dtype = draw(st.sampled_from(DTYPES))
    num_samples = int(10 ** draw(st.floats(math.log10(2), 5.0)))
    num_prompts = draw(st.integers(1, 3))
    pass_rate = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.3, 0.5, 0.97, 1.0]))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    outcomes = (torch.rand(num_prompts, num_samples, generator=generator) < pass_rate).double()
    if not binary:
        largest = torch.finfo(dtype).max
        scale = draw(st.sampled_from([1.0, 1e-3, 400.0, 1e4, largest / 4, largest]))
        offset = draw(st.sampled_from([0.0, -0.5, 1.0, -largest / 2]))
        outcomes = outcomes * scale + offset
    return outcomes.to(dtype)


def check_against_float64(name: str, rewards: torch.Tensor) -> None:
    dtype = rewards.dtype
    expected = ADVANTAGES[name](rewards.double())  # the same inputs, computed in float64
    largest = float(expected.abs().max())
    try:
        got = ADVANTAGES[name](rewards)
    except OverflowError as error:
        assert str(dtype) in str(error) and name.split("_")[0] in str(error)
        assert largest > torch.finfo(dtype).max, f"refused though {largest:g} fits {dtype}"
        return
    assert got.dtype == dtype and got.shape == rewards.shape
    assert bool(torch.isfinite(got).all())
    eps = torch.finfo(dtype).eps
    # Elementwise: one rounding to the dtype, plus reduction error relative to the group's scale.
    tolerance = eps * expected.abs() + 8 * eps * expected.abs().amax(dim=1, keepdim=True)
    if name in LINEAR:  # the plain formula: a rounding error relative to the rewards themselves
        work_eps = torch.finfo(torch.promote_types(dtype, torch.float32)).eps
        tolerance = tolerance + 4 * work_eps * rewards.double().abs().amax(dim=1, keepdim=True)
    assert bool(((got.double() - expected).abs() <= tolerance).all()), (
        f"{name} {dtype} N={rewards.shape[1]}: max error "
        f"{float((got.double() - expected).abs().max()):g}"
    )


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
@settings(max_examples=40)
@given(data=st.data())
def test_matches_float64_within_the_dtype_precision(name, data):
    rewards = data.draw(reward_batches(binary=name in BINARY_ONLY))
    check_against_float64(name, rewards)


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
@pytest.mark.parametrize("dtype", DTYPES)
def test_largest_groups_in_every_dtype(name, dtype):
    generator = torch.Generator().manual_seed(1)
    for num_samples in (300, 70_000, 100_000):
        rewards = (torch.rand(2, num_samples, generator=generator) < 0.3).to(dtype)
        rewards[1, 1:] = 0  # one success in N: the largest MaxRL advantage, N - 1
        check_against_float64(name, rewards)
