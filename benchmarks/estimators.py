"""Speed of the advantage functions, as ratios measured in one run.

For each (P, N) and device, every advantage function in ``companion.estimators.ADVANTAGES`` is
timed against

* the floor: one elementwise pass over the same tensor (``rewards * 2.0``), the memory-bound
  minimum any advantage function must pay;
* a Python loop over prompts calling the same function on one row at a time.

The goal is every advantage function within 5x of the floor. Also times
``companion.exact.gradient_moments`` for M = 3 outputs and N = 64 samples, and
``companion.estimators.grouped`` (flat rewards ``(B,)`` with a group index, the verl/prime-rl
layout) against the ``(P, N)`` form on the same equal-size groups: ids in order (goal: within
3x) and shuffled rows (a sort is paid).

    python benchmarks/estimators.py [--sizes 4096x64 65536x64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from companion.estimators import ADVANTAGES, grouped
from companion.exact import gradient_moments


def timed(fn, device: torch.device) -> float:
    """Wall time of one call, synchronising on CUDA."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def paired_ratio(fn, reference, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median over ``repeats`` of time(fn) / time(reference), each pair timed back to back
    so that load from other processes affects both alike; also the median time of ``fn``."""
    fn(), reference()
    ratios, times = [], []
    for _ in range(repeats):
        base = timed(reference, device)
        spent = timed(fn, device)
        ratios.append(spent / base)
        times.append(spent)
    return statistics.median(ratios), statistics.median(times)


def bench_device(device: torch.device, sizes: list[tuple[int, int]], repeats: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for num_prompts, num_samples in sizes:
        rewards = (torch.rand(num_prompts, num_samples, generator=generator) < 0.3).float()
        rewards = rewards.to(device)
        loop_rows = rewards[:256]

        def floor(r=rewards):
            return r * 2.0

        print(f"\n{device.type}  P={num_prompts} N={num_samples}")
        print(f"{'method':<24}{'x floor':>10}{'loop speed-up':>16}")
        for name, fn in ADVANTAGES.items():
            ratio, vectorised = paired_ratio(lambda f=fn, r=rewards: f(r), floor, repeats, device)

            # The loop is timed on 256 rows and scaled to P rows.
            def loop(f=fn, rows=loop_rows):
                return [f(row[None, :]) for row in rows]

            looped = statistics.median(timed(loop, device) for _ in range(3))
            looped *= num_prompts / loop_rows.shape[0]
            flag = "" if ratio <= 5 else "  (above the 5x goal)"
            print(f"{name:<24}{ratio:>10.2f}{looped / vectorised:>16.0f}{flag}")
        bench_grouped(rewards, repeats, device)


def bench_grouped(rewards: torch.Tensor, repeats: int, device: torch.device) -> None:
    """grouped(fn, rewards (B,), ids (B,)) against fn(rewards (P, N)) on the same groups."""
    num_prompts, num_samples = rewards.shape
    flat = rewards.reshape(-1)  # (B,)
    ids = torch.arange(num_prompts, device=device).repeat_interleave(num_samples)  # (B,)
    order = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(1)).to(device)
    print(f"{'grouped / (P, N)':<24}{'ids in order':>14}{'shuffled':>12}")
    for name, fn in ADVANTAGES.items():
        in_order, _ = paired_ratio(
            lambda f=fn: grouped(f, flat, ids), lambda f=fn: f(rewards), repeats, device
        )
        shuffled, _ = paired_ratio(
            lambda f=fn, r=flat[order], g=ids[order]: grouped(f, r, g),
            lambda f=fn: f(rewards),
            repeats,
            device,
        )
        flag = "" if in_order <= 3 else "  (above the 3x goal)"
        print(f"{name:<24}{in_order:>14.2f}{shuffled:>12.2f}{flag}")


def bench_exact(repeats: int) -> None:
    logits = torch.log(torch.tensor([0.1, 0.6, 0.3]))
    success = torch.tensor([True, False, False])
    seconds = statistics.median(
        timed(
            lambda: gradient_moments(logits, success, 64, ADVANTAGES["maxrl"]), torch.device("cpu")
        )
        for _ in range(repeats)
    )
    print(f"\ngradient_moments, M = 3, N = 64 (2145 count vectors): {seconds * 1e3:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["4096x64", "65536x64"])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        bench_device(device, sizes, args.repeats)
    bench_exact(args.repeats)


if __name__ == "__main__":
    main()
