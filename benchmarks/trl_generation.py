"""Rollout throughput: the companion's maze sampler against transformers ``generate`` (TRL's path).

    python benchmarks/trl_generation.py                 # CPU, and CUDA when present
    python benchmarks/trl_generation.py --devices cpu --prompts 8 --samples 8

TRL's ``GRPOTrainer`` (without vLLM) generates with the policy's own ``generate``: here a tiny
Qwen2 causal LM built from a config. The companion samples with its own decoder and KV cache
(chapter 9). Both models get the same width, depth and heads (the Qwen2 MLP width is 8/3 of
the hidden size, so the parameter counts match), the same mazes, the same P x N batch, the
same answer length limit and plain temperature-1 sampling. Throughput counts generated tokens
up to and with the first DONE, per second of wall time; the ratio is measured in one run on one
device. Nothing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time

import torch

from companion.integrations.trl_maze import make_mazes, tiny_causal_lm
from companion.maze.env import DONE, PAD, VOCAB_SIZE, encode_prompt, max_answer_length
from companion.maze.env import prompt_length as maze_prompt_length
from companion.maze.model import MazeTransformer, ModelConfig
from companion.maze.sampler import sample

SCALES = {  # the chapter-9 model sizes: CPU scale and GPU scale
    "cpu": dict(cells=3, d_model=64, n_layers=2, n_heads=4, prompts=16, samples=16),
    "cuda": dict(cells=4, d_model=128, n_layers=4, n_heads=4, prompts=32, samples=64),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tokens_until_done(answers: torch.Tensor) -> int:
    """Generated tokens up to and with the first DONE in each row of ``answers`` (B, L)."""
    is_done = answers == DONE
    first = torch.where(is_done.any(1), is_done.int().argmax(1) + 1, answers.shape[1])
    return int(first.sum())


def companion_throughput(model, prompts, samples, max_new, repeats) -> float:
    generator = torch.Generator(device=prompts.device).manual_seed(0)
    sample(model, prompts, samples, max_new, generator=generator)  # warm-up
    _sync(prompts.device)
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        rollouts = sample(model, prompts, samples, max_new, generator=generator)
        tokens += rollouts.num_generated
    _sync(prompts.device)
    return tokens / (time.perf_counter() - start)


@torch.no_grad()
def transformers_throughput(model, prompts, samples, max_new, repeats) -> float:
    inputs = prompts.repeat_interleave(samples, dim=0)
    options = dict(
        attention_mask=torch.ones_like(inputs), do_sample=True, temperature=1.0, top_k=0,
        top_p=1.0, max_new_tokens=max_new, pad_token_id=PAD, eos_token_id=DONE,
    )  # fmt: skip
    torch.manual_seed(0)
    model.generate(input_ids=inputs, **options)  # warm-up
    _sync(prompts.device)
    tokens, start = 0, time.perf_counter()
    for _ in range(repeats):
        output = model.generate(input_ids=inputs, **options)
        tokens += tokens_until_done(output[:, inputs.shape[1] :])
    _sync(prompts.device)
    return tokens / (time.perf_counter() - start)


def run(device: torch.device, prompts_count: int | None, samples: int | None, repeats: int):
    scale = dict(SCALES["cuda" if device.type == "cuda" else "cpu"])
    prompts_count = prompts_count or scale["prompts"]
    samples = samples or scale["samples"]
    cells = scale["cells"]
    max_new = max_answer_length(cells)
    context = maze_prompt_length(cells) + max_new
    torch.manual_seed(0)
    companion_model = MazeTransformer(
        ModelConfig(
            vocab_size=VOCAB_SIZE, context_length=context, d_model=scale["d_model"],
            n_layers=scale["n_layers"], n_heads=scale["n_heads"],
        )
    ).to(device)  # fmt: skip
    hf_model = tiny_causal_lm(
        hidden_size=scale["d_model"], num_layers=scale["n_layers"], num_heads=scale["n_heads"],
        max_positions=context + 8,
    ).to(device)  # fmt: skip
    hf_model.eval()
    mazes = make_mazes(cells, prompts_count, seed=0)
    prompts = torch.tensor([encode_prompt(m) for m in mazes], device=device)
    ours = companion_throughput(companion_model, prompts, samples, max_new, repeats)
    theirs = transformers_throughput(hf_model, prompts, samples, max_new, repeats)
    count = sum(p.numel() for p in companion_model.parameters())
    hf_count = sum(p.numel() for p in hf_model.parameters())
    print(
        f"{device.type}: {cells}x{cells}-cell mazes, batch {prompts_count} x {samples}, "
        f"answers <= {max_new} tokens; parameters companion {count:,} / Qwen2 {hf_count:,}"
    )
    print(f"  companion sampler (KV cache)     {ours:12,.0f} tokens/s")
    print(f"  transformers generate (TRL path) {theirs:12,.0f} tokens/s")
    print(f"  ratio companion / transformers   {ours / theirs:12.2f}")
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu and cuda")
    parser.add_argument("--prompts", type=int, default=None, help="P mazes per batch")
    parser.add_argument("--samples", type=int, default=None, help="N rollouts per maze")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for name in devices:
        run(torch.device(name), args.prompts, args.samples, args.repeats)


if __name__ == "__main__":
    main()
