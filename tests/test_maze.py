"""Tests of the maze experiment (chapter 9): environment, model, sampler, trainer."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from companion.maze.config import MazeConfig
from companion.maze.data import distinct_problems, spanning_trees
from companion.maze.env import (
    DONE,
    DOWN,
    LEFT,
    MOVES,
    PAD,
    RIGHT,
    UP,
    VOCAB_SIZE,
    Maze,
    bfs_path,
    decode_prompt,
    draw_mazes,
    encode_prompt,
    is_perfect,
    prim_maze,
    prompt_length,
    verify,
    verify_batch,
)
from companion.maze.model import KVCache, MazeTransformer, ModelConfig, shared_prefix_attention
from companion.maze.sampler import sample, token_logprobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _distances(maze: Maze) -> dict[tuple[int, int], int]:
    """Flood fill from START over open squares (independent of bfs_path)."""
    dist = {maze.start: 0}
    queue = deque([maze.start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < maze.size and 0 <= nxt[1] < maze.size and maze.open[nxt]:
                if nxt not in dist:
                    dist[nxt] = dist[(r, c)] + 1
                    queue.append(nxt)
    return dist


def _mazes(count: int = 40) -> list[Maze]:
    rng = np.random.default_rng(123)
    return [prim_maze(2 + i % 7, rng) for i in range(count)]


# ----------------------------------------------------------------------------- environment
def test_draw_mazes_refuses_impossible_requests_instead_of_looping():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="could not find"):
        draw_mazes(2, 49, rng)  # only 48 distinct problems exist with 2x2 cells
    everything = {m.key() for m in draw_mazes(2, 48, rng)}
    with pytest.raises(ValueError, match="could not find"):
        draw_mazes(2, 1, rng, exclude=everything, distinct=False)
    repeats = draw_mazes(2, 100, rng, distinct=False)
    assert len(repeats) == 100 and len({m.key() for m in repeats}) <= 48


def test_spanning_trees_and_distinct_problems():
    """Kirchhoff's count against known values (OEIS A007341) and a float determinant."""
    assert [spanning_trees(c) for c in range(1, 6)] == [1, 4, 192, 100352, 557568000]
    for cells in (2, 3, 4, 5):
        n = cells * cells
        adjacency = np.zeros((n, n))
        for r in range(cells):
            for c in range(cells):
                for nr, nc in ((r + 1, c), (r, c + 1)):
                    if nr < cells and nc < cells:
                        adjacency[r * cells + c, nr * cells + nc] = 1
        adjacency += adjacency.T
        laplacian = np.diag(adjacency.sum(1)) - adjacency
        assert round(np.linalg.det(laplacian[1:, 1:])) == spanning_trees(cells)
    assert distinct_problems(2) == 48 and distinct_problems(3) == 13824
    rng = np.random.default_rng(0)
    assert len({m.key() for m in draw_mazes(2, 48, rng)}) == 48  # every 2x2 problem is reachable


def test_prim_mazes_are_perfect_by_counting_edges_and_connectivity():
    for maze in _mazes():
        cells = maze.cells
        odd = maze.open[1::2, 1::2]
        assert odd.all() and not maze.open[::2, ::2].any()
        passages = int(maze.open.sum()) - cells * cells
        assert passages == cells * cells - 1  # a tree: edges = cells - 1
        reached = _distances(maze)
        assert all(
            reached.get((r, c)) is not None
            for r in range(1, maze.size, 2)
            for c in range(1, maze.size, 2)
        )  # connected
        assert is_perfect(maze)


def test_is_perfect_rejects_a_cycle_and_a_disconnected_maze():
    maze = prim_maze(4, np.random.default_rng(0))
    closed = np.argwhere(~maze.open[1:-1, 1:-1]) + 1
    walls = [tuple(p) for p in closed if (p[0] % 2) != (p[1] % 2)]
    extra = maze.open.copy()
    extra[walls[0]] = True  # one passage too many: a cycle
    assert not is_perfect(Maze(extra, maze.start, maze.goal))
    passages = [tuple(p) for p in np.argwhere(maze.open) if (p[0] % 2) != (p[1] % 2)]
    fewer = maze.open.copy()
    fewer[passages[0]] = False
    assert not is_perfect(Maze(fewer, maze.start, maze.goal))


def test_same_seed_same_maze_and_bad_sizes_raise():
    a = prim_maze(5, np.random.default_rng(7))
    b = prim_maze(5, np.random.default_rng(7))
    assert a.key() == b.key()
    with pytest.raises(ValueError):
        prim_maze(1, np.random.default_rng(0))
    with pytest.raises(ValueError):
        prim_maze(9, np.random.default_rng(0))
    with pytest.raises(TypeError):
        prim_maze(3, 0)


def test_bfs_path_is_shortest_and_accepted():
    for maze in _mazes():
        path = bfs_path(maze)
        assert len(path) == _distances(maze)[maze.goal]
        assert verify(maze, path + [DONE])
        assert not verify(maze, path)  # no DONE
        assert verify(maze, path + [DONE, UP, UP])  # tokens after DONE are ignored


def test_verifier_rejects_wall_bounds_wrong_goal_and_other_tokens():
    maze = prim_maze(3, np.random.default_rng(1))
    r, c = maze.start
    into_wall = next(m for m, (dr, dc) in MOVES.items() if not maze.open[r + dr, c + dc])
    assert not verify(maze, [into_wall, DONE])
    assert not verify(maze, _with_wall_detour(maze, bfs_path(maze)) + [DONE])
    assert not verify(maze, [DONE])  # START is not GOAL
    assert not verify(maze, [PAD, DONE])
    path = bfs_path(maze)
    assert not verify(maze, path[:-1] + [DONE])  # stops one square short
    # out of bounds: on an all-open grid the only failure left is leaving the grid
    free = Maze(np.ones((5, 5), dtype=bool), start=(1, 1), goal=(3, 3))
    assert verify(free, [DOWN, DOWN, RIGHT, RIGHT, DONE])
    assert not verify(free, [UP, UP, DOWN, DOWN, DOWN, DOWN, RIGHT, RIGHT, DONE])
    assert not verify(free, [LEFT, LEFT, RIGHT, RIGHT, DOWN, DOWN, RIGHT, RIGHT, DONE])


OPPOSITE = {UP: DOWN, DOWN: UP, LEFT: RIGHT, RIGHT: LEFT}


def _with_wall_detour(maze: Maze, path: list[int]) -> list[int]:
    """``path`` with a step into a wall and back inserted where a wall is beside it."""
    r, c = maze.start
    for t, move in enumerate([*path, None]):
        for wall_move, (dr, dc) in MOVES.items():
            if not maze.open[r + dr, c + dc]:
                return path[:t] + [wall_move, OPPOSITE[wall_move]] + path[t:]
        if move is not None:
            r, c = r + MOVES[move][0], c + MOVES[move][1]
    raise AssertionError("no wall beside the path")


def _step_away_and_back(maze: Maze, path: list[int]) -> list[int]:
    """``path`` then one move off GOAL into an open square and the move back."""
    r, c = maze.goal
    away = next(m for m, (dr, dc) in MOVES.items() if maze.open[r + dr, c + dc])
    return path + [away, OPPOSITE[away]]


def test_verify_batch_equals_verify_on_random_answers():
    """Kinds of answer (i % 6): the BFS path + DONE (1); with a wall detour (0); at GOAL with
    no DONE, then PAD (0); past GOAL and back + DONE (1); past GOAL + DONE (0); random."""
    rng = np.random.default_rng(5)
    mazes = [prim_maze(3, rng) for _ in range(36)]
    answers, kinds = [], []
    for i, maze in enumerate(mazes):
        path, kind = bfs_path(maze), i % 6
        if kind == 0:
            answer = path + [DONE]
        elif kind == 1:
            answer = _with_wall_detour(maze, path) + [DONE]
        elif kind == 2:
            answer = path  # reaches GOAL, never says DONE
        elif kind == 3:
            answer = _step_away_and_back(maze, path) + [DONE]
        elif kind == 4:
            answer = _step_away_and_back(maze, path)[:-1] + [DONE]  # DONE one square off
        else:
            answer = list(rng.choice([UP, DOWN, LEFT, RIGHT, DONE, PAD], size=rng.integers(1, 9)))
        answers.append((answer + [PAD] * 20)[:20])
        kinds.append(kind)
    expected = [float(verify(m, a)) for m, a in zip(mazes, answers, strict=True)]
    got = verify_batch(
        torch.from_numpy(np.stack([m.open for m in mazes])),
        torch.tensor([m.start for m in mazes]),
        torch.tensor([m.goal for m in mazes]),
        torch.tensor(answers),
    )
    assert got.tolist() == expected
    by_kind = {k: {e for e, kk in zip(expected, kinds, strict=True) if kk == k} for k in range(5)}
    assert by_kind == {0: {1.0}, 1: {0.0}, 2: {0.0}, 3: {1.0}, 4: {0.0}}


def test_tokenizer_round_trip():
    for maze in _mazes(14):
        tokens = encode_prompt(maze)
        assert len(tokens) == prompt_length(maze.cells)
        back = decode_prompt(tokens)
        assert back.key() == maze.key() and (back.open == maze.open).all()
    with pytest.raises(ValueError):
        decode_prompt(encode_prompt(_mazes(1)[0])[:-1])


# ----------------------------------------------------------------------------- model, sampler
def _tiny_model(seed: int = 0) -> MazeTransformer:
    torch.manual_seed(seed)
    return MazeTransformer(
        ModelConfig(vocab_size=VOCAB_SIZE, context_length=64, d_model=32, n_layers=2, n_heads=4)
    )


def test_model_shapes_and_gpu_scale_size():
    model = _tiny_model()
    logits = model(torch.randint(0, VOCAB_SIZE, (3, 10)))
    assert logits.shape == (3, 10, VOCAB_SIZE)
    gpu_params = MazeTransformer(MazeConfig.gpu().model_config()).num_parameters()
    assert 0.80e6 < gpu_params < 0.86e6  # the measured 0.83M-parameter configuration
    with pytest.raises(ValueError):
        model(torch.zeros(2, 65, dtype=torch.long))


def test_kv_cache_logits_equal_full_forward():
    model = _tiny_model().eval()
    tokens = torch.randint(0, VOCAB_SIZE, (2, 12))
    full = model(tokens)
    cache = model.new_cache()
    pieces = [model(tokens[:, :7], cache)] + [
        model(tokens[:, t : t + 1], cache) for t in range(7, 12)
    ]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cached_sampler_equals_uncached_sampler():
    model = _tiny_model(1)
    prompts = torch.randint(0, VOCAB_SIZE, (3, 20))
    greedy = [sample(model, prompts, 2, 12, temperature=0.0, use_cache=flag) for flag in (1, 0)]
    assert torch.equal(greedy[0].tokens, greedy[1].tokens)
    sampled = []
    for flag in (True, False):
        generator = torch.Generator().manual_seed(3)
        sampled.append(sample(model, prompts, 4, 12, generator=generator, use_cache=flag))
    assert torch.equal(sampled[0].tokens, sampled[1].tokens)
    assert torch.equal(sampled[0].mask, sampled[1].mask)
    rollouts = sampled[0]
    assert rollouts.tokens.shape[:2] == (3, 4)
    ended = (rollouts.tokens == DONE).cumsum(-1)
    # mask is True up to and including the first DONE; PAD after it
    assert torch.equal(rollouts.mask, (ended - (rollouts.tokens == DONE).long()) == 0)
    assert (rollouts.tokens[~rollouts.mask] == PAD).all()


def test_token_logprobs_cache_equals_full_pass():
    model = _tiny_model(2)
    prompts = torch.randint(0, VOCAB_SIZE, (2, 15))
    answers = torch.randint(0, VOCAB_SIZE, (6, 7))
    fast = token_logprobs(model, prompts, answers)
    slow = token_logprobs(model, prompts, answers, use_cache=False)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)
    fast.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _prefix_case(steps: int, own_past: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    prompts, group, heads, dim, prefix = 3, 4, 2, 8, 5
    batch = prompts * group

    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    q = randn(batch, heads, steps, dim)
    prefix_k, prefix_v = randn(prompts, heads, prefix, dim), randn(prompts, heads, prefix, dim)
    own_k, own_v = (
        randn(batch, heads, own_past + steps, dim),
        randn(batch, heads, own_past + steps, dim),
    )
    return q, prefix_k, prefix_v, own_k, own_v, group


@pytest.mark.parametrize(("steps", "own_past"), [(1, 0), (1, 6), (4, 0), (3, 5)])
def test_shared_prefix_attention_equals_attention_over_copied_keys(steps, own_past):
    q, prefix_k, prefix_v, own_k, own_v, group = _prefix_case(steps, own_past)
    keys = torch.cat([prefix_k.repeat_interleave(group, 0), own_k], dim=2)
    values = torch.cat([prefix_v.repeat_interleave(group, 0), own_v], dim=2)
    total = keys.shape[2]
    allowed = torch.ones(steps, total, dtype=torch.bool).tril(total - steps)
    expected = torch.nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
    got = shared_prefix_attention(q, prefix_k, prefix_v, own_k, own_v)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_shared_prefix_cache_refuses_misuse():
    model = _tiny_model()
    cache = model.new_cache()
    with pytest.raises(ValueError, match="fill the cache"):
        cache.share_prefix(2)
    model(torch.randint(0, VOCAB_SIZE, (2, 5)), cache)
    shared = cache.share_prefix(3)
    assert isinstance(shared, KVCache) and shared.prefix_len == 5 and shared.group == 3
    with pytest.raises(ValueError, match="already shares"):
        shared.share_prefix(2)
    with pytest.raises(ValueError, match="plain cache"):
        shared.repeat_interleave(2)


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_sampling_frequencies_follow_softmax_of_logits_over_temperature(temperature):
    """First-token frequencies of many samples against softmax(logits / T), with peaked
    logits so that T = 0.5, 1 and 2 give clearly different distributions."""
    model = _tiny_model(4)
    prompt = torch.randint(0, VOCAB_SIZE, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.head.weight.mul_(1.5 / model(prompt)[0, -1].std())  # logits spread by about 1.5
        logits = model(prompt)[0, -1].double()
    expected = torch.softmax(logits / temperature, dim=0)
    assert (expected - torch.softmax(logits, 0)).abs().max() > 0.05  # T matters here
    draws = 40_000
    generator = torch.Generator().manual_seed(2)
    first = sample(model, prompt, draws, 1, temperature=temperature, generator=generator)
    frequencies = torch.bincount(first.tokens[0, :, 0], minlength=VOCAB_SIZE).double() / draws
    sigma = (expected * (1 - expected) / draws).sqrt()
    assert ((frequencies - expected).abs() <= 5 * sigma + 1e-9).all()
