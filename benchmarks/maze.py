"""Maze rollouts: tokens per second of the companion's sampler, against transformers' generate,
and the wall time of one RL step.

    python benchmarks/maze.py                    # CPU scale on CPU, GPU scale on CUDA if present
    python benchmarks/maze.py --scale gpu        # the GPU-scale model and batch on every device

For each device present (CPU always, CUDA when available) it prints generated tokens per second
of the companion's batched sampler (the prompt's keys shared by its N answers) and of
transformers' generate (the path TRL's GRPOTrainer takes without vLLM) on a Qwen2 model of the
same width, depth and heads (its MLP width is 8/3 of the hidden size, so the parameter counts
match) with the same P x N batch, answer length limit and temperature-1 sampling; their ratio;
and the wall time of one RL step (sampling + verification + backward + update) per method.
Untrained models: answers run until a random DONE. Tokens count up to and with the first DONE.
Ratios are measured in the same run on the same device; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import time

import torch

from companion.maze.config import MazeConfig
from companion.maze.data import prepare_data
from companion.maze.env import DONE, PAD, VOCAB_SIZE, max_answer_length, prompt_length
from companion.maze.model import MazeTransformer
from companion.maze.sampler import sample
from companion.maze.train import make_generator, rl_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, repeats: int, call) -> tuple[int, float]:
    """(sum of what ``call()`` returns, seconds) over ``repeats`` calls after one warm-up."""
    call()
    _sync(device)
    total, start = 0, time.perf_counter()
    for _ in range(repeats):
        total += call()
    _sync(device)
    return total, time.perf_counter() - start


def companion_tokens_per_second(model, prompts, config: MazeConfig, repeats: int) -> float:
    generator = make_generator(prompts.device, 0)
    max_new = max_answer_length(config.cells)

    def call() -> int:
        return sample(
            model,
            prompts,
            config.num_samples,
            max_new,
            generator=generator,
            autocast=config.autocast,
        ).num_generated

    tokens, seconds = _timed(prompts.device, repeats, call)
    return tokens / seconds


def qwen2_like(config: MazeConfig):
    """A randomly initialised Qwen2 causal LM over the maze vocabulary, sized like the maze
    transformer of ``config``."""
    import transformers

    qwen = transformers.Qwen2Config(
        vocab_size=VOCAB_SIZE,
        hidden_size=config.d_model,
        intermediate_size=round(8 * config.d_model / 3),
        num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads,
        num_key_value_heads=config.n_heads,
        max_position_embeddings=prompt_length(config.cells) + max_answer_length(config.cells) + 8,
        tie_word_embeddings=True,
        pad_token_id=PAD,
        eos_token_id=DONE,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(qwen).eval()


@torch.no_grad()
def generate_tokens_per_second(model, prompts, config: MazeConfig, repeats: int) -> float:
    inputs = prompts.repeat_interleave(config.num_samples, dim=0)
    options = dict(
        attention_mask=torch.ones_like(inputs),
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=max_answer_length(config.cells),
        pad_token_id=PAD,
        eos_token_id=DONE,
    )
    torch.manual_seed(0)

    def call() -> int:
        answers = model.generate(input_ids=inputs, **options)[:, inputs.shape[1] :]
        is_done = answers == DONE
        ends = torch.where(is_done.any(1), is_done.int().argmax(1) + 1, answers.shape[1])
        return int(ends.sum())

    tokens, seconds = _timed(prompts.device, repeats, call)
    return tokens / seconds


def rl_step_seconds(config: MazeConfig, pool, method: str, repeats: int) -> float:
    device = torch.device(config.device)
    torch.manual_seed(0)
    model = MazeTransformer(config.model_config()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.rl_lr)
    generator = make_generator(device, 0)
    index = torch.arange(config.prompts_per_step, device=device)

    def call() -> int:
        rl_step(model, optimizer, method, pool, index, generator, config)
        return 1

    steps, seconds = _timed(device, repeats, call)
    return seconds / steps


def run(config: MazeConfig, repeats: int, with_transformers: bool) -> None:
    device = torch.device(config.device)
    pool, _ = prepare_data(config.replace(train_pool=max(64, config.prompts_per_step)))
    torch.manual_seed(0)
    model = MazeTransformer(config.model_config()).to(device)
    prompts = pool.prompts[: config.prompts_per_step]
    print(
        f"[{device}] {config.scale} scale: {config.cells}x{config.cells}-cell mazes, "
        f"{config.prompts_per_step} prompts x {config.num_samples} rollouts, "
        f"{model.num_parameters():,} parameters, untrained"
    )
    ours = companion_tokens_per_second(model, prompts, config, repeats)
    print(f"  companion sampler        : {ours:12,.0f} tokens/s")
    if with_transformers:
        hf = qwen2_like(config).to(device)
        theirs = generate_tokens_per_second(hf, prompts, config, repeats)
        count = sum(p.numel() for p in hf.parameters())
        print(
            f"  transformers generate    : {theirs:12,.0f} tokens/s (Qwen2, {count:,} parameters)"
        )
        print(f"  ratio companion / generate: {ours / theirs:11.2f}x")
    for method in config.methods:
        seconds = rl_step_seconds(config, pool, method, repeats)
        print(f"  one RL step ({method:9s}): {seconds * 1000:9.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["auto", "cpu", "gpu"], default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    parser.add_argument("--no-transformers", action="store_true", help="skip generate")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        scale = args.scale if args.scale != "auto" else ("gpu" if device == "cuda" else "cpu")
        config = MazeConfig.for_scale(scale, device=device, autocast=device == "cuda")
        run(config, args.repeats, not args.no_transformers)


if __name__ == "__main__":
    main()
