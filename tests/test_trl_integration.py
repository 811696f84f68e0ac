"""MaxRL inside TRL: the advantages TRL applies equal the companion's (chapter 10).

Each trainer test records what reaches TRL's ``_compute_loss`` (after its gather, slicing,
shuffling and splitting), regroups the rows by prompt, recomputes every completion's reward
with the same reward function and compares the applied advantages with the companion
estimator on those rewards. Then a short maze run through TRL and a real two-process run.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "trl", reason='TRL is an optional dependency (chapter 10): pip install -e ".[scale]"'
)

import torch  # noqa: E402
import trl  # noqa: E402
from trl import GRPOTrainer, RLOOConfig, RLOOTrainer  # noqa: E402

from companion.estimators import ADVANTAGES, grpo, maxrl, policy_gradient_loss, rloo  # noqa: E402
from companion.integrations import trl as ctrl  # noqa: E402
from companion.maze.env import DONE, TOKEN_ID, VOCAB, bfs_path, encode_prompt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NUM_GENERATIONS = 8
PROMPTS_PER_STEP = 4


def first_token_even_reward(completion_ids, **_):
    """Binary reward of a completion, recomputable from what reaches the loss."""
    return [float(len(ids) > 0 and ids[0] % 2 == 0) for ids in completion_ids]


def reward_of(completion: list[int]) -> float:
    return first_token_even_reward([completion])[0]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def parts():
    mazes = ctrl.make_mazes(2, 16, seed=0)
    return {"tokenizer": ctrl.maze_tokenizer(), "dataset": ctrl.maze_dataset(mazes)}


def run_recorded(trainer_base, parts, tmp_path, *, steps=2, config_class=None, **options):
    """Train ``steps`` steps with a recording subclass of ``trainer_base``; return the groups
    ``[(rewards (G,), applied advantages (G,)), ...]`` and the trainer."""
    recording = type("Recording", (ctrl.RecordLossInputs, trainer_base), {})
    trainer_options = {}
    if "advantage" in options:
        trainer_options["advantage"] = options.pop("advantage")
    if config_class is None:
        args = ctrl.grpo_config(
            str(tmp_path),
            max_steps=steps,
            prompts_per_step=PROMPTS_PER_STEP,
            num_generations=NUM_GENERATIONS,
            max_completion_length=6,
            **options,
        )
    else:
        args = config_class(
            output_dir=str(tmp_path),
            max_steps=steps,
            num_generations=NUM_GENERATIONS,
            per_device_train_batch_size=PROMPTS_PER_STEP * NUM_GENERATIONS,
            max_completion_length=6,
            learning_rate=1e-3,
            bf16=False,
            gradient_checkpointing=False,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1,
            use_cpu=not torch.cuda.is_available(),
            top_k=0,
            **options,
        )
    trainer = recording(
        model=ctrl.tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2, seed=1),
        reward_funcs=first_token_even_reward,
        args=args,
        train_dataset=parts["dataset"],
        processing_class=parts["tokenizer"],
        **trainer_options,
    )
    trainer.remove_callback(ctrl.transformers.trainer_callback.PrinterCallback)
    trainer.train()
    groups = []
    for _, completions, applied in ctrl.recorded_groups(trainer.loss_inputs):
        assert len(completions) == NUM_GENERATIONS
        rewards = torch.tensor([reward_of(c) for c in completions])
        groups.append((rewards, applied))
    assert len(groups) == steps * PROMPTS_PER_STEP
    return groups, trainer


def stacked(groups):
    rewards = torch.stack([r for r, _ in groups])  # (P, G)
    applied = torch.stack([a for _, a in groups])  # (P, G)
    return rewards, applied


def assert_mixed(rewards):
    """Some group has both outcomes, so the comparison is not 0 == 0 only."""
    assert bool(((rewards.sum(1) > 0) & (rewards.sum(1) < rewards.shape[1])).any())


# ---------------------------------------------------------------------------------------------
# advantages that reach the loss
# ---------------------------------------------------------------------------------------------
def test_maxrl_advantages_reach_trl_loss(parts, tmp_path):
    groups, trainer = run_recorded(ctrl.CompanionGRPOTrainer, parts, tmp_path)
    rewards, applied = stacked(groups)
    assert_mixed(rewards)
    expected = maxrl(rewards, "algorithm1")
    torch.testing.assert_close(applied, expected, rtol=1e-6, atol=1e-6)
    # and not TRL's own GRPO values
    assert not torch.allclose(applied, grpo(rewards, eps=1e-4), atol=1e-3)
    # loop spec of Algorithm 1: (r - mean) / mean, 0 when every sample fails
    for row_rewards, row_applied in groups:
        mean = float(row_rewards.mean())
        for r, a in zip(row_rewards.tolist(), row_applied.tolist(), strict=True):
            assert a == pytest.approx(0.0 if mean == 0 else (r - mean) / mean, abs=1e-6)
    assert all(math.isfinite(x) for x in trainer.reward_history)
    assert trainer.last_advantages.shape == (PROMPTS_PER_STEP, NUM_GENERATIONS)


@pytest.mark.parametrize("name", ["maxrl_control_variate", "dr_grpo"])
def test_other_companion_estimators_by_name(parts, tmp_path, name):
    groups, trainer = run_recorded(
        ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1, advantage=name
    )
    rewards, applied = stacked(groups)
    assert_mixed(rewards)
    assert trainer.advantage_name == name
    torch.testing.assert_close(applied, ADVANTAGES[name](rewards), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale_rewards", ["group", "none"])
def test_trl_grpo_equals_companion_grpo(parts, tmp_path, scale_rewards):
    groups, _ = run_recorded(GRPOTrainer, parts, tmp_path, scale_rewards=scale_rewards)
    rewards, applied = stacked(groups)
    assert_mixed(rewards)
    if scale_rewards == "group":
        torch.testing.assert_close(
            applied, grpo(rewards, eps=1e-4, unbiased=True), rtol=1e-6, atol=1e-6
        )
        # the conventions matter: verl's eps or the population std would not match
        assert not torch.allclose(applied, grpo(rewards, eps=1e-6), rtol=1e-6, atol=1e-6)
        assert not torch.allclose(applied, grpo(rewards, eps=1e-4, unbiased=False), atol=1e-3)
    else:
        torch.testing.assert_close(applied, grpo(rewards, scale="none"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("normalize_advantages", [False, True])
def test_trl_rloo_equals_companion_rloo(parts, tmp_path, normalize_advantages):
    groups, _ = run_recorded(
        RLOOTrainer,
        parts,
        tmp_path,
        config_class=RLOOConfig,
        beta=0.0,
        normalize_advantages=normalize_advantages,
    )
    rewards, applied = stacked(groups)
    assert_mixed(rewards)
    expected = rloo(rewards)  # (P, G)
    if normalize_advantages:
        # TRL option: standardise the advantages over the whole generation batch (one optimizer
        # step here), eps 1e-4, Bessel's correction
        steps = expected.view(-1, PROMPTS_PER_STEP * NUM_GENERATIONS)
        mean, std = steps.mean(1, keepdim=True), steps.std(1, keepdim=True)
        expected = ((steps - mean) / (std + 1e-4)).view_as(rewards)
    torch.testing.assert_close(applied, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_type", ["dapo", "grpo"])
def test_trl_loss_gradient_matches_companion_aggregation(parts, tmp_path, loss_type):
    """TRL's default "dapo" loss has the gradient of the companion's token_mean aggregation;
    "grpo" (per-sequence token mean) that of the sequence aggregation with A_i / L_i."""
    _, trainer = run_recorded(
        ctrl.CompanionGRPOTrainer, parts, tmp_path, steps=1, loss_type=loss_type
    )
    model, inputs = trainer.model, trainer.loss_inputs[0]

    def gradient(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    trl_gradient = gradient(trainer._compute_loss(model, inputs))
    logprobs = ctrl.completion_token_logprobs(model, inputs)[None]  # (1, B, T)
    mask = inputs["completion_mask"].float()[None]
    advantages = inputs["advantages"][None]  # (1, B)
    if loss_type == "dapo":
        ours = policy_gradient_loss(logprobs, advantages, mask, aggregation="token_mean")
    else:
        lengths = mask.sum(-1)
        ours = policy_gradient_loss(logprobs, advantages / lengths, mask, aggregation="sequence")
    companion_gradient = gradient(ours)
    assert companion_gradient.abs().max() > 1e-3  # a real gradient, not 0 == 0
    torch.testing.assert_close(trl_gradient, companion_gradient, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# failing loudly
# ---------------------------------------------------------------------------------------------
def test_unsupported_trl_version_raises(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(trl, "__version__", "1.15.0")
    with pytest.raises(ctrl.UnsupportedTRLVersionError, match=r"trl==1\.16\.0.*trl==1\.15\.0"):
        ctrl.check_trl_version()
    with pytest.raises(ctrl.UnsupportedTRLVersionError, match=r"1\.16\.0"):
        ctrl.CompanionGRPOTrainer(
            model=ctrl.tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2),
            reward_funcs=first_token_even_reward,
            args=ctrl.grpo_config(str(tmp_path), max_steps=1),
            train_dataset=parts["dataset"],
            processing_class=parts["tokenizer"],
        )
    assert ctrl.check_trl_version("1.16.0") == "1.16.0"


def test_maxrl_rejects_non_binary_rewards_inside_trl(parts, tmp_path):
    def half_reward(completion_ids, **_):
        return [0.5] * len(completion_ids)

    trainer = ctrl.CompanionGRPOTrainer(
        model=ctrl.tiny_causal_lm(hidden_size=32, num_layers=1, num_heads=2),
        reward_funcs=half_reward,
        args=ctrl.grpo_config(str(tmp_path), max_steps=1, max_completion_length=4),
        train_dataset=parts["dataset"],
        processing_class=parts["tokenizer"],
    )
    with pytest.raises(ValueError, match="binary rewards"):
        trainer.train()


def test_missing_trl_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)
    monkeypatch.delitem(sys.modules, "companion.integrations.trl")
    with pytest.raises(ImportError, match=r'pip install -e "\.\[scale\]"'):
        importlib.import_module("companion.integrations.trl")


def test_resolve_and_group_advantages():
    name, fn = ctrl.resolve_advantage("maxrl")
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    assert name == "maxrl"
    assert ctrl.group_advantages(rewards, 4, fn).tolist() == [3.0, -1.0, -1.0, -1.0, 0, 0, 0, 0]
    assert ctrl.resolve_advantage("rloo")[1] is rloo
    with pytest.raises(ValueError, match="unknown advantage"):
        ctrl.resolve_advantage("ppo")
    with pytest.raises(ValueError, match="groups of"):
        ctrl.group_advantages(rewards, 3, fn)
    with pytest.raises(ValueError, match="N = 1"):  # Algorithm 1 with a group of one
        ctrl.group_advantages(rewards, 1, fn)


# ---------------------------------------------------------------------------------------------
# offline maze pieces and a short run
# ---------------------------------------------------------------------------------------------
def test_tokenizer_and_reward_match_chapter_9():
    tokenizer = ctrl.maze_tokenizer()
    maze = ctrl.make_mazes(3, 1, seed=3)[0]
    text = ctrl.maze_prompt_text(maze)
    assert tokenizer(text)["input_ids"] == encode_prompt(maze)
    assert tokenizer.convert_tokens_to_ids(list(VOCAB)) == [TOKEN_ID[t] for t in VOCAB]
    assert ctrl.maze_from_prompt_text(text).key() == maze.key()
    path = bfs_path(maze)
    rewards = ctrl.maze_reward([text] * 3, [[*path, DONE], path, [DONE]])
    assert rewards == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown token"):
        ctrl.maze_from_prompt_text(text + " BANANA")


def test_maze_through_trl_trains():
    config = ctrl.TRLMazeConfig(
        cells=2,
        train_mazes=48,
        eval_mazes=48,
        held_out=False,
        eval_samples=4,
        sft_steps=60,
        sft_batch=32,
        rl_steps=4,
        learning_rate=5e-4,
    )
    result = ctrl.train_maze_with_trl(config)
    assert result.world_size == 1 and result.trl_version == ctrl.SUPPORTED_TRL_VERSION
    assert len(result.reward_history) == 4 and len(result.loss_history) == 4
    assert all(math.isfinite(x) for x in result.reward_history + result.loss_history)
    assert result.parameter_change > 0
    assert 0.0 <= result.pass_rate_before <= 1.0 and 0.0 <= result.pass_rate_after <= 1.0
    assert result.pass_rate_before > 0  # the warm start solves some mazes


def test_two_processes_with_torchrun():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "companion.integrations.trl_maze", "--steps", "2", "--expect-world-size", "2",
        "--check-advantages",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} of 2 finished 2 steps" in done.stdout, output[-3000:]
    assert '"world_size": 2' in done.stdout
