"""Training throughput of the classification-as-sampling experiment (chapter 8).

    python benchmarks/classification.py            # C = 1000, N = 1024, 100 steps, CPU (+ CUDA)
    python benchmarks/classification.py --steps 300 --n 1024 --threads 1

Reports sampled labels (rollouts) per second of training, evaluation excluded, for
cross-entropy (examples per second), REINFORCE and MaxRL at the same N, in the regime of the
committed results (C = 1000 classes, 128 examples per step), on the CPU and, when present, on
CUDA, with the CUDA / CPU ratio. Numbers measured in one run; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from companion.classification import REGIME, make_task
from companion.classification.provenance import device_name
from companion.classification.train import train


def measure(device: torch.device, steps: int, num_samples: int) -> dict[str, float]:
    """Rollouts per second of each method on ``device`` (one short warm-up run first)."""
    config = dataclasses.replace(REGIME, steps=steps, eval_every=steps, validation_size=256)
    task = make_task(config, device)
    runs = [("cross_entropy", 1), ("reinforce", num_samples), ("maxrl", num_samples)]
    warmup = dataclasses.replace(config, method="maxrl", num_samples=num_samples, steps=5)
    train(warmup, device=device, task=task)
    throughput = {}
    for method, n in runs:
        run_config = dataclasses.replace(config, method=method, num_samples=n)
        result, _ = train(run_config, device=device, task=task)
        throughput[run_config.label] = result.rollouts_per_second
    return throughput


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps per run")
    parser.add_argument("--n", type=int, default=1024, help="sampled labels per example")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, C = "
        f"{REGIME.num_classes}, batch {REGIME.batch_size}, N = {args.n}, {args.steps} steps"
    )
    results = {}
    for device in devices:
        results[device.type] = measure(device, args.steps, args.n)
        for label, value in results[device.type].items():
            unit = "examples/s" if label == "cross-entropy" else "rollouts/s"
            print(f"{device_name(device)[:40]:>40}  {label:<18} {value:14,.0f} {unit}")
    if "cuda" in results:
        for label in results["cpu"]:
            ratio = results["cuda"][label] / results["cpu"][label]
            print(f"cuda / cpu  {label:<18} {ratio:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
