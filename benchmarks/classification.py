"""Training throughput of the classification-as-sampling experiment (chapter 8).

    python benchmarks/classification.py            # N = 1024, 100 steps, CPU and (if present) CUDA
    python benchmarks/classification.py --steps 300 --n 1024 --threads 1

Reports rollouts (sampled labels) per second of training, evaluation excluded, for cross-entropy
(examples per second), REINFORCE and MaxRL at the same N, on every available device, and the
CUDA / CPU ratio when both ran. Numbers measured in one run; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from companion.classification import ClassificationConfig, make_task, train


def measure(device: torch.device, steps: int, num_samples: int) -> dict[str, float]:
    """Rollouts per second of each method on ``device`` (one short warm-up run first)."""
    config = dataclasses.replace(
        ClassificationConfig.cpu(), steps=steps, eval_every=steps, validation_size=256
    )
    task = make_task(config, device)
    warmup = dataclasses.replace(config, steps=5, eval_every=5)
    train(warmup, "maxrl", num_samples, device=device, task=task, progress=False)
    throughput = {}
    for method, n in [("cross_entropy", None), ("reinforce", num_samples), ("maxrl", num_samples)]:
        run, _ = train(config, method, n, device=device, task=task, progress=False)
        throughput[run.label] = run.rollouts_per_second
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
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch 128, "
        f"N = {args.n}, {args.steps} steps"
    )
    results = {}
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        results[device.type] = measure(device, args.steps, args.n)
        for label, value in results[device.type].items():
            unit = "examples/s" if label == "cross-entropy" else "rollouts/s"
            print(f"{name:>24}  {label:<18} {value:14,.0f} {unit}")
    if "cuda" in results:
        for label in results["cpu"]:
            ratio = results["cuda"][label] / results["cpu"][label]
            print(f"cuda / cpu  {label:<18} {ratio:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
