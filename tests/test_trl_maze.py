"""The maze task through TRL: offline pieces, a short run with held-out evaluation and a saved
model, a paired comparison, and a real two-process run whose groups straddle the processes."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "trl", reason='TRL is an optional dependency (chapter 10): pip install -e ".[scale]"'
)

import torch  # noqa: E402
import transformers  # noqa: E402
import trl_kernel_fallback  # noqa: E402  (tests/: TRL 1.15 on a CPU)

from companion.integrations import trl_maze  # noqa: E402
from companion.maze.env import DONE, TOKEN_ID, VOCAB, bfs_path, encode_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KERNEL_FALLBACK = trl_kernel_fallback.apply()  # False with TRL 1.16: the real entry point

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(
    cells=2, train_mazes=32, eval_mazes=16, eval_samples=4, sft_steps=60, sft_batch=32,
    rl_steps=3, prompts_per_step=4, learning_rate=5e-4,
)  # fmt: skip


def test_tokenizer_and_reward_match_chapter_9():
    tokenizer = trl_maze.maze_tokenizer()
    maze = trl_maze.make_mazes(3, 1, seed=3)[0]
    text = trl_maze.maze_prompt_text(maze)
    assert tokenizer(text)["input_ids"] == encode_prompt(maze)
    assert tokenizer.convert_tokens_to_ids(list(VOCAB)) == [TOKEN_ID[t] for t in VOCAB]
    assert trl_maze.maze_from_prompt_text(text).key() == maze.key()
    path = bfs_path(maze)
    rewards = trl_maze.maze_reward([text] * 3, [[*path, DONE], path, [DONE]])
    assert rewards == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown token"):
        trl_maze.maze_from_prompt_text(text + " BANANA")


def test_defaults_hold_out_the_evaluation_mazes():
    config = trl_maze.TRLMazeConfig()
    assert config.eval_mazes > 0 and config.cells == 3
    warm = trl_maze.warm_start(trl_maze.TRLMazeConfig(**{**SMALL, "sft_steps": 0}))
    assert len(warm.held_out) == 16 and len(warm.train) == 32
    assert not {m.key() for m in warm.held_out} & {m.key() for m in warm.train}
    with pytest.raises(ValueError, match="eval_mazes >= 0"):
        trl_maze.TRLMazeConfig(eval_mazes=-1)


def test_maze_through_trl_trains_and_saves_the_model(tmp_path):
    result = trl_maze.train_maze_with_trl(trl_maze.TRLMazeConfig(**SMALL), output_dir=tmp_path)
    assert result.world_size == 1
    assert len(result.reward_history) == 3 and len(result.loss_history) == 3
    assert all(math.isfinite(x) for x in result.reward_history + result.loss_history)
    assert result.parameter_change > 0
    assert len(result.per_maze_before) == len(result.per_maze_after) == 16
    assert result.pass_rate_before == pytest.approx(sum(result.per_maze_before) / 16)
    assert result.pass_rate_before > 0  # the warm start solves some held-out mazes
    # the saved model is the trained one, and the tokenizer comes back with it
    saved = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    for ours, theirs in zip(result.trainer.model.parameters(), saved.parameters(), strict=True):
        assert torch.equal(ours.detach().cpu(), theirs)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    maze = trl_maze.make_mazes(2, 1, seed=5)[0]
    assert tokenizer(trl_maze.maze_prompt_text(maze))["input_ids"] == encode_prompt(maze)
    assert result.config["family"] == "llama"
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["pass_rate_after"] == result.pass_rate_after
    assert {"config", "git_commit", "git_clean", "device", "versions", "start_time"} <= set(
        record["provenance"]
    )


def test_saving_a_qwen2_model_warns_about_autotokenizer(tmp_path):
    config = trl_maze.TRLMazeConfig(
        **{**SMALL, "family": "qwen2", "sft_steps": 0, "rl_steps": 1, "eval_mazes": 0}
    )
    with pytest.warns(UserWarning, match="PreTrainedTokenizerFast.from_pretrained"):
        trl_maze.train_maze_with_trl(config, output_dir=tmp_path)
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path)
    maze = trl_maze.make_mazes(2, 1, seed=5)[0]
    assert tokenizer(trl_maze.maze_prompt_text(maze))["input_ids"] == encode_prompt(maze)


def test_comparison_is_paired():
    config = trl_maze.TRLMazeConfig(**{**SMALL, "sft_steps": 20, "rl_steps": 1, "eval_mazes": 4})
    results = trl_maze.compare_with_trl(config, ["maxrl", "grpo"], [0])
    maxrl_run, grpo_run = results["runs"]
    assert (maxrl_run["method"], grpo_run["method"]) == ("maxrl", "grpo")
    # one warm start per seed: the same model and mazes before RL
    assert maxrl_run["per_maze_before"] == grpo_run["per_maze_before"]
    assert maxrl_run["sft_losses"] == grpo_run["sft_losses"]
    assert results["provenance"]["config"]["methods"] == ["maxrl", "grpo"]
    json.dumps(results)  # JSON-ready


def test_compare_command_writes_results_and_a_slice(tmp_path):
    from companion.integrations.trl_maze.__main__ import COMPARISON_FILE, main

    argv = [
        "compare", "--cells", "2", "--train-mazes", "32", "--eval-mazes", "4",
        "--eval-samples", "2", "--sft-steps", "40", "--steps", "4", "--prompts-per-step", "2",
        "--seeds", "0", "--output-dir", str(tmp_path),
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / COMPARISON_FILE).read_text())
    assert [run["method"] for run in results["runs"]] == ["maxrl", "grpo"]
    assert results["provenance"]["config"]["seeds"] == [0]
    sliced = results["slice"]
    assert sliced["config"]["sft_steps"] == 30 and sliced["config"]["rl_steps"] == 3
    # the slice's warm start is the beginning of the full run's (same seed, same data)
    full, part = results["runs"][0]["sft_losses"], sliced["runs"][0]["sft_losses"]
    assert part == full[:30]


def test_two_processes_with_groups_that_straddle_them():
    """3 prompts x 8 completions on 2 processes of 12 rows: prompt 1 has 4 completions on each
    process. The records of both processes are gathered and every group is checked whole."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
    entry = (
        [str(ROOT / "tests" / "trl_kernel_fallback.py")]
        if KERNEL_FALLBACK
        else ["-m", "companion.integrations.trl_maze"]
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *entry, "run", "--cells", "2", "--train-mazes", "48",
        "--eval-mazes", "0", "--sft-steps", "60", "--sft-batch", "32", "--steps", "3",
        "--prompts-per-step", "3", "--num-generations", "8", "--expect-world-size", "2",
        "--check-advantages",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for rank in (0, 1):
        # searched anywhere: the two processes share stdout, so lines may interleave
        found = re.search(
            rf"rank {rank} of 2 finished 3 steps; first step checked 12 rows; gathered groups "
            r"checked 9 \(3 split over processes, \d+ with a nonzero advantage, (\d+) both\)",
            done.stdout,
        )
        # every step: 3 groups, one of them split; the first step checked this rank's 12 rows;
        # and some split group has a nonzero advantage, where a per-process computation differs
        assert found and int(found.group(1)) >= 1, done.stdout[-3000:]
    assert '"world_size": 2' in done.stdout
