r"""Group advantages of a flat batch: rewards ``(B,)`` with a group index ``(B,)``.

Distributed trainers such as verl and prime-rl keep a batch flat: one row per completion, and a
group index saying which prompt each completion answers. Rows of one group need not be
adjacent, and groups may have different sizes (a filter that drops truncated or over-long
completions leaves some prompts with fewer samples). :func:`grouped` applies any estimator of
:mod:`companion.estimators` to such a batch:

.. math:: A_{b} = \bigl[\mathrm{advantage\_fn}(r_{G(b)}[\,\mathrm{None}\,])\bigr]_{0,\,
          \mathrm{pos}(b)}, \qquad G(b) = \{b' : \mathrm{id}_{b'} = \mathrm{id}_b\},

the advantage of row ``b`` is the estimator applied to the rewards of its own group as a
``(1, n_g)`` tensor, at the row's position in that group (rows of a group keep their order).

Derived in: chapter 10.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Not imported from companion.estimators, which re-exports this module's function.
AdvantageFn = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["grouped"]

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _check_inputs(rewards: object, group_ids: object) -> None:
    """Types, shapes, devices and finiteness of a flat batch; raises TypeError/ValueError."""
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(
            f"grouped: rewards must be a torch.Tensor of shape (B,), got {type(rewards).__name__}"
        )
    if not isinstance(group_ids, torch.Tensor):
        raise TypeError(
            f"grouped: group_ids must be an integer torch.Tensor of shape (B,), got "
            f"{type(group_ids).__name__}; string ids (verl's uid) can be numbered with "
            "torch.as_tensor(numpy.unique(uids, return_inverse=True)[1])"
        )
    if not rewards.is_floating_point():
        raise TypeError(
            f"grouped: rewards must have a floating-point dtype, got {rewards.dtype}; "
            "convert with rewards.float()"
        )
    if group_ids.dtype not in _INTEGER_DTYPES:
        raise TypeError(
            f"grouped: group_ids must be integers (int8..int64 or uint8), got {group_ids.dtype}; "
            "convert ids that hold whole numbers with group_ids.long()"
        )
    if rewards.ndim != 1 or group_ids.ndim != 1:
        raise ValueError(
            f"grouped: rewards and group_ids must be 1-D (B,), got shapes "
            f"{tuple(rewards.shape)} and {tuple(group_ids.shape)}; for (P, N) rewards call the "
            "estimator directly, or pass rewards.reshape(-1) with the matching ids"
        )
    if rewards.shape != group_ids.shape:
        raise ValueError(
            f"grouped: rewards has {rewards.shape[0]} rows but group_ids has "
            f"{group_ids.shape[0]}; expected one group id per reward"
        )
    if rewards.numel() == 0:
        raise ValueError("grouped: the batch is empty (B = 0)")
    if rewards.device != group_ids.device:
        raise ValueError(
            f"grouped: rewards on {rewards.device} but group_ids on {group_ids.device}; "
            "move them to the same device"
        )
    if not bool(torch.isfinite(rewards.sum())) and not bool(torch.isfinite(rewards).all()):
        row = int(torch.nonzero(~torch.isfinite(rewards))[0, 0])
        raise ValueError(
            f"grouped: group {int(group_ids[row])} has a NaN or infinite reward "
            f"({float(rewards[row])} at row {row})"
        )


def _equal_groups_in_order(group_ids: torch.Tensor, head: int = 4096) -> int | None:
    """``N`` when ``group_ids`` is P runs of N equal ids in increasing order (TRL's layout), else
    None (also when the first group is longer than ``head``). One comparison over the batch."""
    first = group_ids[: head + 1]
    changes = torch.nonzero(first[1:] != first[:-1])  # the first group's size, if <= head
    size = int(changes[0, 0]) + 1 if changes.numel() else group_ids.numel()
    if group_ids.numel() % size:
        return None
    rows = group_ids.view(-1, size)  # (P, N)
    if not bool((rows[1:, 0] > rows[:-1, 0]).all()):
        return None
    return size if torch.equal(rows, rows[:, :1].expand_as(rows)) else None


def _bucket_by_size(
    group_ids: torch.Tensor,
) -> tuple[torch.Tensor, list[int], list[int], list[torch.Tensor]]:
    """The row order that sorts the batch by (group size, group id), stably, and per distinct
    size: the size, the number of groups and their ids. One sort of the batch."""
    sorted_ids, by_id = torch.sort(group_ids, stable=True)  # rows of a group keep their order
    is_start = torch.ones_like(sorted_ids, dtype=torch.bool)
    is_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
    starts = torch.nonzero(is_start).squeeze(1)  # (G,) first row of each group in by_id
    counts = torch.diff(starts, append=starts.new_tensor([sorted_ids.numel()]))  # (G,)
    counts_sorted, group_order = torch.sort(counts, stable=True)  # groups by size, then id
    # row r of the new order is row (start of its group + position in the group) of by_id
    new_starts = torch.cumsum(counts_sorted, 0) - counts_sorted  # (G,)
    shift = torch.repeat_interleave(starts[group_order] - new_starts, counts_sorted)  # (B,)
    order = by_id[shift + torch.arange(sorted_ids.numel(), device=sorted_ids.device)]
    sizes, groups_per_size = torch.unique_consecutive(counts_sorted, return_counts=True)
    ids_by_size = torch.split(sorted_ids[starts[group_order]], groups_per_size.tolist())
    return order, sizes.tolist(), groups_per_size.tolist(), list(ids_by_size)


def _call(
    advantage_fn: AdvantageFn, block: torch.Tensor, ids_of_rows: torch.Tensor
) -> torch.Tensor:
    """``advantage_fn(block)`` for a ``(P_s, n_s)`` block of whole groups; on a ValueError, find
    the first group that the estimator rejects on its own and name it."""
    try:
        advantages = advantage_fn(block)
    except ValueError as error:
        for row in range(block.shape[0]):  # error path only: locate the offending group
            try:
                advantage_fn(block[row : row + 1])
            except ValueError as row_error:
                others = block.shape[0] - 1
                also = f" ({others} other group(s) of this size in the batch)" if others else ""
                raise ValueError(
                    f"grouped: group {int(ids_of_rows[row])} of size {block.shape[1]}{also}: "
                    f"{row_error}"
                ) from row_error
        raise ValueError(f"grouped: groups of size {block.shape[1]}: {error}") from error
    if not isinstance(advantages, torch.Tensor) or advantages.shape != block.shape:
        raise ValueError(
            f"grouped: the estimator returned "
            f"{getattr(advantages, 'shape', type(advantages).__name__)} for rewards of shape "
            f"{tuple(block.shape)}; expected the same shape"
        )
    return advantages


def grouped(
    advantage_fn: AdvantageFn, rewards: torch.Tensor, group_ids: torch.Tensor
) -> torch.Tensor:
    r"""Advantages of a flat batch whose rows carry a group index (the verl/prime-rl layout).

    For each group :math:`g` with rows :math:`b_1 < \dots < b_{n_g}`,

    .. math:: (A_{b_1}, \dots, A_{b_{n_g}}) = \mathrm{advantage\_fn}
              \bigl([[r_{b_1}, \dots, r_{b_{n_g}}]]\bigr)[0],

    so every estimator of :data:`companion.estimators.ADVANTAGES` keeps its meaning (and its
    checks: binary rewards for MaxRL, at least 2 samples for RLOO, GRPO and Algorithm 1) on
    groups of any size and in any order.

    ==============  ========  ===================================================
    argument        shape     meaning
    ==============  ========  ===================================================
    ``rewards``     ``(B,)``  one reward per completion, floating point
    ``group_ids``   ``(B,)``  integer id of the prompt each completion answers
    returns         ``(B,)``  advantages, row ``b`` for completion ``b``
    ==============  ========  ===================================================

    Vectorised: rows are sorted by (group size, group id), and ``advantage_fn`` is called once
    per distinct group size, on a ``(P_s, n_s)`` view of the P_s groups of that size; the
    results are scattered back. Ids already sorted into groups of one size (TRL's layout)
    skip the sort and the copies.

    Raises
    ------
    TypeError
        ``rewards`` not a floating tensor, ``group_ids`` not an integer tensor.
    ValueError
        Not 1-D, lengths that differ, an empty batch, different devices, a NaN or infinite
        reward, or a group the estimator rejects (e.g. a group of one for Algorithm 1): the
        message names the group.

    Examples
    --------
    >>> from companion.estimators import maxrl
    >>> grouped(maxrl, torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0]), torch.tensor([7, 7, 3, 3, 7]))
    tensor([ 2., -1.,  1., -1., -1.])

    Derived in: chapter 10.
    """
    _check_inputs(rewards, group_ids)
    size = _equal_groups_in_order(group_ids)
    if size is not None:  # TRL's layout: a (P, N) view, no sort and no copy
        return _call(advantage_fn, rewards.view(-1, size), group_ids[::size]).reshape(-1)
    order, sizes, groups_per_size, ids_by_size = _bucket_by_size(group_ids)
    sorted_rewards = rewards[order]  # (B,), groups of one size contiguous
    pieces = []
    offset = 0
    for size, num_groups, ids in zip(sizes, groups_per_size, ids_by_size, strict=True):
        block = sorted_rewards[offset : offset + size * num_groups].view(num_groups, size)
        pieces.append(_call(advantage_fn, block, ids).reshape(-1))
        offset += size * num_groups
    sorted_advantages = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
    advantages = torch.empty_like(sorted_advantages)
    advantages[order] = sorted_advantages  # scatter back to the batch order
    return advantages
