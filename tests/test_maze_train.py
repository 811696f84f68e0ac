"""Tests of the maze trainer (chapter 9): config, data, rewards, loss, resume, safe loading."""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from companion.estimators import ADVANTAGES
from companion.maze.config import MazeConfig
from companion.maze.data import evaluation_mazes, prepare_data, stream_seed
from companion.maze.env import DONE, PAD, bfs_path, verify
from companion.maze.experiment import run_experiment
from companion.maze.provenance import RunFileError, load_checkpoint, read_json, write_json
from companion.maze.sampler import sample, token_logprobs
from companion.maze.train import (
    evaluate,
    make_generator,
    rl_step,
    train_rl,
    train_sft,
    verify_rollouts,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(**overrides) -> MazeConfig:
    values = dict(
        cells=3,
        d_model=16,
        n_layers=1,
        n_heads=2,
        sft_steps=4,
        sft_batch=8,
        rl_steps=4,
        prompts_per_step=4,
        num_samples=4,
        train_pool=64,
        eval_mazes=6,
        eval_samples=4,
        probe_mazes=8,
        probe_samples=2,
        probe_every=2,
        checkpoint_every=2,
        seeds=(0,),
    )
    values.update(overrides)
    return MazeConfig.cpu(**values)


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("grad_clip", 0.0),
        ("grad_clip", -1.0),
        ("grad_clip", math.inf),
        ("rl_lr", 0.0),
        ("rl_lr", math.nan),
        ("sft_lr", -1e-3),
        ("weight_decay", -0.1),
        ("sft_steps", -1),
        ("rl_steps", -5),
        ("sft_batch", 0),
        ("prompts_per_step", 0),
        ("num_samples", 1),
        ("eval_mazes", 0),
        ("eval_samples", 0),
        ("checkpoint_every", 0),
        ("cells", 1),
        ("cells", 9),
        ("n_heads", 3),
        ("probe_mazes", 10_000),
        ("rl_pool", 10_000),
        ("rl_pool", -1),
        ("methods", ("maxrl", "nope")),
        ("methods", ("maxrl", "maxrl")),
        ("methods", ()),
        ("seeds", (0, 0)),
        ("seeds", (-1,)),
        ("device", "nowhere"),
    ],
)
def test_config_rejects_bad_values_when_built(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0] if field != "n_heads" else "d_model"):
        MazeConfig.cpu(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"), [("rl_steps", 2.5), ("sft_batch", True), ("rl_lr", "fast"), ("autocast", 1)]
)
def test_config_rejects_wrong_types(field, value):
    with pytest.raises(TypeError, match=field):
        MazeConfig.cpu(**{field: value})


def test_scales_and_round_trip():
    for scale in ("cpu", "long", "gpu"):
        for experiment in ("compare", "sweep", "fixed"):
            config = MazeConfig.for_scale(scale, experiment)
            assert MazeConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    long, cpu = MazeConfig.long(), MazeConfig.cpu()
    same = (
        "cells",
        "d_model",
        "n_layers",
        "sft_steps",
        "sft_batch",
        "sft_lr",
        "rl_lr",
        "prompts_per_step",
        "num_samples",
        "train_pool",
        "probe_mazes",
    )
    assert all(getattr(long, f) == getattr(cpu, f) for f in same)  # cpu is a slice of long
    assert len(long.seeds) >= 5 and long.eval_mazes >= 256
    fixed = MazeConfig.for_scale("long", "fixed")
    assert (
        fixed.rl_pool and fixed.sft_steps == long.sft_steps and fixed.train_pool == long.train_pool
    )
    gpu = MazeConfig.gpu()
    assert gpu.cells >= 4 and len(gpu.seeds) >= 3 and gpu.device == "cuda"
    with pytest.raises(ValueError, match="scale"):
        MazeConfig(scale="huge")
    with pytest.raises(ValueError, match="unknown fields"):
        MazeConfig.from_dict({**long.to_dict(), "extra": 1})


# -------------------------------------------------------------------------------- data
def test_pool_does_not_depend_on_the_number_of_held_out_mazes():
    small, large = (prepare_data(tiny_config(eval_mazes=m))[0] for m in (6, 40))
    assert [m.key() for m in small.mazes] == [m.key() for m in large.mazes]
    pool, held_out = prepare_data(tiny_config(train_pool=3000, eval_mazes=40))
    assert not {m.key() for m in pool.mazes} & {m.key() for m in evaluation_mazes(3, 512)}
    assert len({m.key() for m in pool.mazes}) == 3000  # distinct training mazes
    assert [m.key() for m in held_out.mazes] == [m.key() for m in evaluation_mazes(3, 40)]


def test_stream_seeds_are_distinct_and_in_range():
    seeds = {
        stream_seed(s, p, t, b)
        for s in range(3)
        for p in (10, 11)
        for t in range(5)
        for b in range(4)
    }
    assert len(seeds) == 3 * 2 * 5 * 4 and all(0 <= s < 2**63 for s in seeds)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A config, its data and a model after a short SFT that solves a few held-out mazes."""
    config = tiny_config(
        n_heads=2, sft_steps=150, sft_lr=5e-3, sft_batch=32, train_pool=500, eval_mazes=40
    )
    pool, held_out = prepare_data(config)
    model = train_sft(config, 0, pool, tmp_path_factory.mktemp("sft")).model
    return config, pool, held_out, model


# -------------------------------------------------------------------- rewards and loss
def test_each_reward_is_checked_against_its_own_maze():
    """P = 3 distinct mazes; each gets its own BFS path, the other mazes' paths, and junk."""
    config = tiny_config()
    _, held_out = prepare_data(config)
    index = torch.tensor([4, 0, 2])
    mazes = [held_out.mazes[i] for i in index.tolist()]
    paths = [bfs_path(m) + [DONE] for m in mazes]
    assert len({tuple(p) for p in paths}) == 3
    answers = [[paths[0], paths[1], paths[2], [DONE]] for _ in range(3)]
    length = max(len(p) for p in paths)
    tokens = torch.tensor([[(a + [PAD] * length)[:length] for a in row] for row in answers])
    rewards = verify_rollouts(held_out, index, tokens)  # (P, N)
    expected = [[float(verify(m, a)) for a in row] for m, row in zip(mazes, answers, strict=True)]
    assert rewards.tolist() == expected
    assert [rewards[p, p].item() for p in range(3)] == [1.0, 1.0, 1.0]
    assert rewards.sum().item() < 9  # another maze's path fails somewhere


def test_rl_loss_is_the_documented_token_mean(warm):
    """rl_step's loss equals -(1/#tokens) sum_{p,i,t} mask * A_{p,i} * log pi, by a loop."""
    config, _, pool, model = warm  # the held-out mazes serve as a pool with known successes
    config = config.replace(num_samples=5, prompts_per_step=3)
    model = copy.deepcopy(model)
    solved = evaluate(model, pool, 5, 0, config)["correct"]
    index = torch.tensor([i for i, c in enumerate(solved) if 0 < c < 5][:3])
    assert len(index) == 3
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rollouts = sample(model, pool.prompts[index], 5, 18, generator=make_generator("cpu", 9))
    rewards = verify_rollouts(pool, index, rollouts.tokens)
    advantages = ADVANTAGES["maxrl"](rewards)
    with torch.no_grad():
        logp = token_logprobs(
            model, pool.prompts[index], rollouts.tokens.reshape(15, -1), use_cache=False
        ).view(3, 5, -1)
    total, count = 0.0, 0
    for p in range(3):
        for i in range(5):
            for t in range(logp.shape[2]):
                if rollouts.mask[p, i, t]:
                    total -= advantages[p, i].item() * logp[p, i, t].item()
                    count += 1
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    metrics = rl_step(model, optimizer, "maxrl", pool, index, make_generator("cpu", 9), config)
    assert rewards.sum() > 0 and (advantages != 0).any()  # a loss that can tell
    assert metrics["loss"] == pytest.approx(total / count, rel=1e-5, abs=1e-7)
    assert metrics["tokens"] == count
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------ trainer
def test_resume_from_checkpoint_gives_identical_results(tmp_path):
    config = tiny_config()
    pool, held_out = prepare_data(config)
    sft = train_sft(config, 0, pool, tmp_path / "a_sft")
    straight = train_rl(config, "maxrl", 0, sft.model, pool, tmp_path / "a", held_out)
    # interrupted after 3 steps (last checkpoint at step 2), then resumed in a fresh call
    assert train_sft(config, 0, pool, tmp_path / "b_sft", stop_after=3).metrics is None
    sft_b = train_sft(config, 0, pool, tmp_path / "b_sft")
    partial = train_rl(
        config, "maxrl", 0, sft_b.model, pool, tmp_path / "b", held_out, stop_after=3
    )
    assert partial.metrics is None
    resumed = train_rl(config, "maxrl", 0, sft_b.model, pool, tmp_path / "b", held_out)
    assert straight.metrics == resumed.metrics and sft.metrics == sft_b.metrics
    assert [("probe_reward" in m) for m in resumed.metrics] == [False, True, False, True]
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_evaluation_of_the_first_block_does_not_depend_on_later_mazes(warm):
    config, _, held_out, model = warm
    full = evaluate(model, held_out, 8, 0, config)
    first = evaluate(model, held_out.subset(32), 8, 0, config)
    assert full["correct"][:32] == first["correct"] and len(full["correct"]) == 40
    assert sum(first["correct"]) > 0
    assert evaluate(model, held_out.subset(32), 8, 1, config)["correct"] != first["correct"]


def test_probing_and_held_out_evaluation_do_not_change_training(tmp_path):
    pool, held_out = prepare_data(tiny_config())
    plain = tiny_config(probe_every=0)
    watched = tiny_config(probe_every=1, eval_every=1)
    sft = train_sft(plain, 0, pool, tmp_path / "sft").model
    a = train_rl(plain, "grpo", 0, sft, pool, tmp_path / "a", held_out).metrics
    b = train_rl(watched, "grpo", 0, sft, pool, tmp_path / "b", held_out).metrics
    keys = ("loss", "grad_norm", "mean_reward", "tokens")
    assert [[m[k] for k in keys] for m in a] == [[m[k] for k in keys] for m in b]
    assert sum("held_out_correct" in m for m in b) == watched.rl_steps - 1


def test_rl_draws_only_from_the_first_rl_pool_mazes(tmp_path, monkeypatch):
    import companion.maze.train as train_module

    seen = []

    def spy(model, optimizer, method, data, index, generator, config):
        seen.extend(index.tolist())
        return {"loss": 0.0}

    monkeypatch.setattr(train_module, "rl_step", spy)
    config = tiny_config(rl_pool=5, rl_steps=30, probe_every=0)
    pool, _ = prepare_data(config)
    sft = train_sft(config, 0, pool, tmp_path / "sft").model
    train_rl(config, "grpo", 0, sft, pool, tmp_path / "rl")
    assert set(seen) == set(range(5))
    seen.clear()
    train_rl(config.replace(rl_pool=0), "grpo", 0, sft, pool, tmp_path / "all")
    assert max(seen) >= 5


def test_experiment_writes_results_and_refuses_another_config(tmp_path):
    config = tiny_config(methods=("grpo", "maxrl"))
    results = run_experiment(
        config, tmp_path / "run", results_path=tmp_path / "r.json", progress=False
    )
    assert not list(tmp_path.rglob("*.tmp"))
    stored = json.loads((tmp_path / "r.json").read_text())
    assert stored["complete"] and stored["config"] == config.to_dict()
    assert (
        stored["runs"]["0"]["maxrl"]["train"]["loss"]
        == results["runs"]["0"]["maxrl"]["train"]["loss"]
    )
    prov = stored["provenance"]
    assert {
        "git_commit",
        "git_clean",
        "device_name",
        "torch",
        "started_utc",
        "wall_seconds",
    } <= set(prov)
    again = run_experiment(config, tmp_path / "run", progress=False)  # resumes: nothing to do
    for name in ("sft", "grpo", "maxrl"):
        assert again["runs"]["0"][name]["train"] == results["runs"]["0"][name]["train"]
        assert again["runs"]["0"][name]["eval"] == results["runs"]["0"][name]["eval"]
    with pytest.raises(RunFileError, match="another configuration"):
        run_experiment(tiny_config(rl_steps=5), tmp_path / "run", progress=False)
    more = run_experiment(config.replace(seeds=(0, 1)), tmp_path / "run", progress=False)
    assert more["runs"]["0"]["maxrl"]["train"] == results["runs"]["0"]["maxrl"]["train"]
    assert more["runs"]["0"]["maxrl"]["eval"] == results["runs"]["0"]["maxrl"]["eval"]
    assert set(more["runs"]) == {"0", "1"}


def test_a_slice_reproduces_the_start_of_a_longer_run_exactly(tmp_path):
    """What the chapter asserts live: fewer RL steps and held-out mazes, same first numbers."""
    full = tiny_config(rl_steps=6, eval_mazes=40, methods=("rloo", "maxrl"), probe_every=3)
    part = full.replace(rl_steps=3, eval_mazes=32)
    a = run_experiment(full, tmp_path / "full", progress=False)["runs"]["0"]
    b = run_experiment(part, tmp_path / "part", progress=False)["runs"]["0"]
    assert a["sft"]["train"] == b["sft"]["train"]
    assert a["sft"]["eval"]["correct"][:32] == b["sft"]["eval"]["correct"]
    assert a["sft"]["eval"]["probe_reward"] == b["sft"]["eval"]["probe_reward"]
    for method in ("rloo", "maxrl"):
        for name, column in b[method]["train"].items():
            if name == "probe_reward":
                assert column["value"][0] == a[method]["train"][name]["value"][0]
            else:
                assert column == a[method]["train"][name][:3]


def test_nothing_is_written_when_the_data_cannot_be_built(tmp_path):
    with pytest.raises(ValueError, match="distinct mazes"):
        run_experiment(tiny_config(cells=2, eval_mazes=49), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_sweep_runs_every_n_from_one_sft(tmp_path):
    config = tiny_config(methods=("maxrl",), rl_steps=2)
    results = run_experiment(config, tmp_path, samples=(2, 3), experiment="sweep", progress=False)
    runs = results["runs"]["0"]
    assert set(runs) == {"sft", "N2", "N3"} and results["num_samples"] == [2, 3]
    assert runs["N2"]["maxrl"]["train"]["tokens"] != runs["N3"]["maxrl"]["train"]["tokens"]


# ------------------------------------------------------------------- files and safety
class _Payload:
    """Pickles to a call that would create ``marker`` when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "step": 0, "x": _Payload(str(marker))}, path)
    with pytest.raises(RunFileError, match="checkpoint.pt"):
        load_checkpoint(path, "cpu")
    assert not marker.exists()
    # and through the trainer's resume path
    config = tiny_config()
    pool, _ = prepare_data(config)
    (tmp_path / "sft").mkdir()
    os.replace(path, tmp_path / "sft" / "checkpoint.pt")
    with pytest.raises(RunFileError, match="delete it"):
        train_sft(config, 0, pool, tmp_path / "sft")
    assert not marker.exists()


def test_truncated_checkpoint_and_json_name_the_file_and_the_remedy(tmp_path):
    config = tiny_config(methods=("maxrl",))
    run_experiment(config, tmp_path, progress=False)
    checkpoint = tmp_path / "seed0" / "maxrl" / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    with pytest.raises(RunFileError, match=r"maxrl/checkpoint\.pt.*delete it"):
        run_experiment(config, tmp_path, progress=False)
    checkpoint.unlink()
    evaluation = tmp_path / "seed0" / "sft" / "eval.json"
    evaluation.write_text(evaluation.read_text()[:20])
    with pytest.raises(RunFileError, match=r"sft/eval\.json is not valid JSON.*delete it"):
        run_experiment(config, tmp_path, progress=False)
    evaluation.unlink()
    run_experiment(config, tmp_path, progress=False)  # recomputed what was deleted
    assert read_json(tmp_path / "missing.json", "") is None


def test_device_checks(monkeypatch):
    from companion.maze.experiment import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        check_device(MazeConfig.gpu())
    check_device(MazeConfig.cpu())
    assert MazeConfig.for_device("cpu").scale == "cpu"
    assert MazeConfig.for_device("cuda").scale == "gpu"
    assert np.isfinite(MazeConfig.gpu().rl_lr)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(_JSON)
@example({"text": 'a [1, 2] list in a string " [3, 4]', "numbers": [1, 2.5, -3e-05]})
def test_results_json_round_trips(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("json") / "x.json"
    write_json(data, path)
    assert json.loads(path.read_text()) == data
