"""Maze sampler throughput with and without the KV cache, and one RL step's time.

    python benchmarks/maze.py                  # CPU scale on CPU, GPU scale on CUDA if present
    python benchmarks/maze.py --scale gpu      # force the GPU-scale model and batch

For each device present (CPU always, CUDA when available) it prints generated tokens per second
of the batched sampler with the cache and without it (every step re-runs the whole sequence),
their ratio, and the wall time of one RL step (sampling + verification + backward + update)
with each method. Ratios are measured in the same run; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import time

import torch

from companion.maze.env import max_answer_length
from companion.maze.model import MazeTransformer
from companion.maze.sampler import sample
from companion.maze.train import MazeConfig, prepare_data, rl_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sampler_throughput(
    model: MazeTransformer,
    prompts: torch.Tensor,
    num_samples: int,
    config: MazeConfig,
    use_cache: bool,
    repeats: int,
) -> float:
    """Generated tokens per second (tokens up to and with DONE)."""
    device = prompts.device
    generator = torch.Generator(device=device).manual_seed(0)

    def rollouts():
        return sample(
            model,
            prompts,
            num_samples,
            max_answer_length(config.cells),
            generator=generator,
            use_cache=use_cache,
            autocast=config.autocast,
        )

    rollouts()  # warm-up
    _sync(device)
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        tokens += rollouts().num_generated
    _sync(device)
    return tokens / (time.perf_counter() - start)


def rl_step_time(
    config: MazeConfig, model: MazeTransformer, pool, method: str, repeats: int
) -> float:
    device = torch.device(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.rl_lr)
    generator = torch.Generator(device=device).manual_seed(0)
    index = torch.arange(config.prompts_per_step, device=device)
    rl_step(model, optimizer, method, pool, index, generator, config)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        rl_step(model, optimizer, method, pool, index, generator, config)
    _sync(device)
    return (time.perf_counter() - start) / repeats


def run(config: MazeConfig, repeats: int) -> None:
    device = torch.device(config.device)
    torch.manual_seed(0)
    pool, _ = prepare_data(config)
    model = MazeTransformer(config.model_config()).to(device)
    prompts = pool.prompts[: config.prompts_per_step]
    print(
        f"[{device}] {config.scale} scale, {config.prompts_per_step} prompts x "
        f"{config.num_samples} rollouts, untrained model (answers run to full length)"
    )
    cached = sampler_throughput(model, prompts, config.num_samples, config, True, repeats)
    plain = sampler_throughput(model, prompts, config.num_samples, config, False, repeats)
    print(f"  sampler with KV cache   : {cached:12,.0f} tokens/s")
    print(f"  sampler without cache   : {plain:12,.0f} tokens/s")
    print(f"  ratio cache / no cache  : {cached / plain:8.2f}x")
    for method in config.methods:
        seconds = rl_step_time(
            config, MazeTransformer(config.model_config()).to(device), pool, method, repeats
        )
        print(f"  one RL step ({method:9s}): {seconds * 1000:8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1: no oversubscription on 2 cores)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        if args.scale == "auto":
            config = MazeConfig.for_device(device)
        else:
            config = getattr(MazeConfig, args.scale)(device=device, autocast=device == "cuda")
        run(config, args.repeats)


if __name__ == "__main__":
    main()
