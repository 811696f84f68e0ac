"""companion.estimators.grouped: flat batches with a group index, against a loop spec."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.estimators import ADVANTAGES, grouped, maxrl, rloo
from companion.flat import grouped as grouped_from_flat

NEEDS_TWO = {"rloo", "grpo", "dr_grpo", "maxrl"}  # estimators that refuse a group of one


def grouped_loop(advantage_fn, rewards, group_ids):
    """Spec: apply the estimator to each group's rewards as a (1, n_g) tensor, row by row."""
    advantages = torch.empty_like(rewards)
    for group in dict.fromkeys(group_ids.tolist()):  # each id once, in order of appearance
        rows = [b for b, g in enumerate(group_ids.tolist()) if g == group]
        values = advantage_fn(rewards[rows][None, :])[0]
        for row, value in zip(rows, values, strict=True):
            advantages[row] = value
    return advantages


@st.composite
def flat_batches(draw, min_size: int):
    """Groups of random sizes, random (possibly negative, non-contiguous) ids, rows shuffled."""
    sizes = draw(st.lists(st.integers(min_size, 7), min_size=1, max_size=9))
    ids = draw(
        st.lists(
            st.integers(-(2**40), 2**40),
            min_size=len(sizes),
            max_size=len(sizes),
            unique=True,
        )
    )
    group_ids = [g for g, n in zip(ids, sizes, strict=True) for _ in range(n)]
    rewards = draw(
        st.lists(st.sampled_from([0.0, 1.0]), min_size=len(group_ids), max_size=len(group_ids))
    )
    order = draw(st.permutations(range(len(group_ids))))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return (
        torch.tensor([rewards[i] for i in order], dtype=dtype),
        torch.tensor([group_ids[i] for i in order]),
    )


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_grouped_equals_loop_spec(name, data):
    rewards, group_ids = data.draw(flat_batches(2 if name in NEEDS_TWO else 1))
    fn = ADVANTAGES[name]
    result = grouped(fn, rewards, group_ids)
    assert result.shape == rewards.shape and result.dtype == rewards.dtype
    torch.testing.assert_close(result, grouped_loop(fn, rewards, group_ids), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_equal_groups_in_order_equal_the_pn_form(name):
    generator = torch.Generator().manual_seed(0)
    rewards = (torch.rand(64, 8, generator=generator) < 0.3).double()  # (P, N)
    group_ids = torch.arange(64).repeat_interleave(8)
    expected = ADVANTAGES[name](rewards).reshape(-1)
    assert torch.equal(grouped(ADVANTAGES[name], rewards.reshape(-1), group_ids), expected)
    # the same batch shuffled, with ids that are not 0..P-1
    order = torch.randperm(rewards.numel(), generator=generator)
    shuffled = grouped(ADVANTAGES[name], rewards.reshape(-1)[order], 1000 - 3 * group_ids[order])
    torch.testing.assert_close(shuffled, expected[order], rtol=1e-12, atol=1e-12)


def test_worked_example_and_reexport():
    assert grouped is grouped_from_flat
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    result = grouped(maxrl, rewards, torch.tensor([7, 7, 3, 3, 7]))
    # group 7 = rows 0, 1, 4: [1, 0, 0], mean 1/3; group 3 = rows 2, 3: [1, 0], mean 1/2
    assert result.tolist() == [2.0, -1.0, 1.0, -1.0, -1.0]


@pytest.mark.parametrize(
    "group_ids",
    [[0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 0, 0, 1, 1, 1, 1, 1, 1], [5, 5, 5, 5, 5, 5, 5, 8, 8]],
)
def test_sorted_ids_with_unequal_sizes(group_ids):
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    group_ids = torch.tensor(group_ids)
    torch.testing.assert_close(
        grouped(rloo, rewards, group_ids), grouped_loop(rloo, rewards, group_ids)
    )


def test_rows_keep_their_order_within_a_group():
    """A position-dependent function sees each group's rows in their batch order."""

    def position_weighted(rewards):
        return rewards * torch.arange(1, rewards.shape[1] + 1, dtype=rewards.dtype)

    generator = torch.Generator().manual_seed(1)
    group_ids = torch.randint(0, 5, (4000,), generator=generator)
    rewards = torch.rand(4000, generator=generator, dtype=torch.float64)
    assert torch.equal(
        grouped(position_weighted, rewards, group_ids),
        grouped_loop(position_weighted, rewards, group_ids),
    )


# ---------------------------------------------------------------------------------------------
# bad input: clear errors naming the offending group
# ---------------------------------------------------------------------------------------------
def test_group_of_one_is_named():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    group_ids = torch.tensor([4, 4, 9, 4, 2])  # groups 9 and 2 have one sample each
    with pytest.raises(ValueError, match=r"group 2 of size 1 \(1 other.*N = 1"):
        grouped(maxrl, rewards, group_ids)
    with pytest.raises(ValueError, match=r"group 2 of size 1.*at least N = 2"):
        grouped(rloo, rewards, group_ids)
    # estimators defined at N = 1 accept it
    for name in ("reinforce", "maxrl_divide_by_k"):
        torch.testing.assert_close(
            grouped(ADVANTAGES[name], rewards, group_ids),
            grouped_loop(ADVANTAGES[name], rewards, group_ids),
        )


def test_non_binary_reward_names_its_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 1.0])
    group_ids = torch.tensor([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match=r"group 2 of size 2 .*binary rewards.*0\.5"):
        grouped(maxrl, rewards, group_ids)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_reward_names_its_group(bad):
    rewards = torch.tensor([1.0, 0.0, 0.0, bad])
    with pytest.raises(ValueError, match=r"group 11 has a NaN or infinite reward"):
        grouped(partial(maxrl, variant="divide_by_k"), rewards, torch.tensor([3, 3, 11, 11]))


@pytest.mark.parametrize(
    ("rewards", "group_ids", "error", "match"),
    [
        (torch.ones(4), torch.tensor([0.0, 0.0, 1.0, 1.0]), TypeError, "must be integers"),
        (torch.ones(4), torch.tensor([True, True, False, False]), TypeError, "must be integers"),
        (torch.ones(4), [0, 0, 1, 1], TypeError, "integer torch.Tensor"),
        (torch.ones(4), np.array(["a", "a", "b", "b"]), TypeError, "numpy.unique"),
        ([1.0, 1.0], torch.tensor([0, 0]), TypeError, "rewards must be a torch.Tensor"),
        (torch.ones(4, dtype=torch.int64), torch.tensor([0, 0, 1, 1]), TypeError, "floating"),
        (torch.ones(4), torch.tensor([0, 0, 1]), ValueError, "4 rows but group_ids has 3"),
        (torch.ones(2, 2), torch.tensor([[0, 0], [1, 1]]), ValueError, "must be 1-D"),
        (torch.ones(4), torch.tensor([[0, 0, 1, 1]]), ValueError, "must be 1-D"),
        (torch.ones(0), torch.zeros(0, dtype=torch.int64), ValueError, "empty"),
    ],
)
def test_bad_input(rewards, group_ids, error, match):
    with pytest.raises(error, match=match):
        grouped(rloo, rewards, group_ids)


def test_estimator_returning_a_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"expected the same shape"):
        grouped(lambda r: r.sum(1), torch.ones(4), torch.tensor([0, 0, 1, 1]))


def test_ids_in_equal_runs_skip_the_sort(monkeypatch):
    """TRL's layout (ids in order, groups of one size) is a plain (P, N) view: no sort."""

    def no_sort(*args, **kwargs):
        raise AssertionError("grouped sorted a batch that was already grouped")

    rewards = (torch.rand(32, 8, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    group_ids = torch.arange(32).repeat_interleave(8) * 7 - 50  # increasing, not 0..P-1
    monkeypatch.setattr(torch, "sort", no_sort)
    monkeypatch.setattr(torch, "unique", no_sort)
    assert torch.equal(grouped(maxrl, rewards.reshape(-1), group_ids), maxrl(rewards).reshape(-1))
