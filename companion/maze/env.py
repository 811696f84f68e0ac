r"""Maze environment: Prim's mazes, BFS paths, the symbolic token format and the verifier.

A maze with ``c x c`` cells lives on a token grid of ``S x S`` squares, ``S = 2c + 1``: cells sit
at odd coordinates ``(2i+1, 2j+1)``, the squares between two neighbouring cells are passages
(open or wall), every other square is wall. A move goes one square of the token grid.

Prompt format (one token per square, row-major)::

    GRID_START  row_0  NEWLINE  row_1  NEWLINE ... row_{S-1}  GRID_END

with squares written as WALL, PATH, START or GOAL. The answer is a list of moves (UP, DOWN,
LEFT, RIGHT) followed by DONE. It is correct iff replaying the moves from START never leaves
the grid or enters a wall, and the position after the last move, when DONE is emitted, is GOAL.

Derived in: chapter 9.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

# --------------------------------------------------------------------------------------------
# vocabulary
# --------------------------------------------------------------------------------------------
VOCAB: tuple[str, ...] = (
    "PAD",
    "WALL",
    "PATH",
    "START",
    "GOAL",
    "NEWLINE",
    "GRID_START",
    "GRID_END",
    "UP",
    "DOWN",
    "LEFT",
    "RIGHT",
    "DONE",
)
TOKEN_ID: dict[str, int] = {name: index for index, name in enumerate(VOCAB)}
PAD, WALL, PATH, START, GOAL = (TOKEN_ID[n] for n in ("PAD", "WALL", "PATH", "START", "GOAL"))
NEWLINE, GRID_START, GRID_END = (TOKEN_ID[n] for n in ("NEWLINE", "GRID_START", "GRID_END"))
UP, DOWN, LEFT, RIGHT, DONE = (TOKEN_ID[n] for n in ("UP", "DOWN", "LEFT", "RIGHT", "DONE"))
MOVES: dict[int, tuple[int, int]] = {UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1)}
VOCAB_SIZE = len(VOCAB)
MIN_CELLS, MAX_CELLS = 2, 8  # token grids from 5x5 to 17x17


@dataclass(frozen=True)
class Maze:
    r"""A maze on its token grid.

    ==========  ==========  ===============================================
    field       shape       meaning
    ==========  ==========  ===============================================
    ``open``    ``(S, S)``  bool, True for a walkable square (cell/passage)
    ``start``   ``(2,)``    (row, col) of START, a cell square
    ``goal``    ``(2,)``    (row, col) of GOAL, a different cell square
    ==========  ==========  ===============================================
    """

    open: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]

    @property
    def size(self) -> int:
        """Side ``S = 2c + 1`` of the token grid."""
        return int(self.open.shape[0])

    @property
    def cells(self) -> int:
        """Cells per side ``c``."""
        return (self.size - 1) // 2

    def key(self) -> str:
        """A hash of grid, start and goal: equal keys mean the same problem."""
        digest = hashlib.sha1(np.packbits(self.open).tobytes())
        digest.update(bytes([self.size, *self.start, *self.goal]))
        return digest.hexdigest()


def _check_cells(cells: int) -> int:
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)):
        raise TypeError(f"cells must be an int, got {type(cells).__name__}")
    if not MIN_CELLS <= cells <= MAX_CELLS:
        raise ValueError(
            f"cells must be in [{MIN_CELLS}, {MAX_CELLS}] (token grids 5x5 to 17x17), got {cells}"
        )
    return int(cells)


def prim_maze(cells: int, rng: np.random.Generator) -> Maze:
    r"""Random perfect maze by Prim's algorithm, with a random START and a different GOAL.

    Grow a tree from a random cell: keep the walls between the tree and the cells outside it
    (the frontier), open one chosen uniformly at random, add the new cell and its walls, repeat
    until every cell is in the tree. The result is a spanning tree of the ``c x c`` cell grid:
    connected, with exactly ``c^2 - 1`` open passages, so one path between any two cells.

    Derived in: chapter 9.
    """
    cells = _check_cells(cells)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    size = 2 * cells + 1
    grid = np.zeros((size, size), dtype=bool)
    in_tree = np.zeros((cells, cells), dtype=bool)
    first = (int(rng.integers(cells)), int(rng.integers(cells)))
    in_tree[first] = True
    grid[2 * first[0] + 1, 2 * first[1] + 1] = True
    frontier: list[tuple[int, int, int, int]] = []  # (from cell, to cell)

    def add_walls(r: int, c: int) -> None:
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            nr, nc = r + dr, c + dc
            if 0 <= nr < cells and 0 <= nc < cells and not in_tree[nr, nc]:
                frontier.append((r, c, nr, nc))

    add_walls(*first)
    while frontier:
        r, c, nr, nc = frontier.pop(int(rng.integers(len(frontier))))
        if in_tree[nr, nc]:
            continue
        in_tree[nr, nc] = True
        grid[r + nr + 1, c + nc + 1] = True  # the passage between the two cells
        grid[2 * nr + 1, 2 * nc + 1] = True
        add_walls(nr, nc)
    start_index, goal_index = rng.choice(cells * cells, size=2, replace=False)
    start = (2 * int(start_index // cells) + 1, 2 * int(start_index % cells) + 1)
    goal = (2 * int(goal_index // cells) + 1, 2 * int(goal_index % cells) + 1)
    return Maze(open=grid, start=start, goal=goal)


def draw_mazes(
    cells: int,
    count: int,
    rng: np.random.Generator,
    exclude: set[str] | frozenset[str] = frozenset(),
    distinct: bool = True,
) -> list[Maze]:
    """``count`` Prim mazes drawn from ``rng``, skipping any whose :meth:`Maze.key` is in
    ``exclude`` and, with ``distinct=True``, any already drawn.

    Raises ``ValueError`` after ``100 * count`` draws instead of looping for ever (a small maze
    size has few distinct mazes: 4 with 2x2 cells, 192 with 3x3). Derived in: chapter 9.
    """
    if count < 1:
        raise ValueError(f"draw_mazes: count must be >= 1, got {count}")
    seen = set(exclude)
    mazes: list[Maze] = []
    for _ in range(100 * count):
        maze = prim_maze(cells, rng)
        if maze.key() in seen:
            continue
        if distinct:
            seen.add(maze.key())
        mazes.append(maze)
        if len(mazes) == count:
            return mazes
    kind = "distinct new" if distinct else "new"
    raise ValueError(
        f"draw_mazes: could not find {count} {kind} {cells}x{cells}-cell mazes in {100 * count} "
        "draws; ask for fewer or use larger mazes"
    )


def is_perfect(maze: Maze) -> bool:
    r"""True iff ``maze`` is a perfect maze on its token grid.

    Checks: every cell square open, every even-even square and the border wall, passages only
    between neighbouring cells, ``#passages = #cells - 1`` and the cell graph connected (a
    connected graph with ``V - 1`` edges is a tree: exactly one path between two cells), START
    and GOAL distinct cells.
    """
    grid = np.asarray(maze.open, dtype=bool)
    size = grid.shape[0]
    if grid.ndim != 2 or grid.shape[1] != size or size % 2 == 0 or size < 5:
        return False
    cells = (size - 1) // 2
    odd = np.arange(1, size, 2)
    if not grid[np.ix_(odd, odd)].all():
        return False
    even = np.arange(0, size, 2)
    if grid[np.ix_(even, even)].any():
        return False
    edges: list[tuple[int, int]] = []
    for r in range(size):
        for c in range(size):
            if grid[r, c] and (r % 2) != (c % 2):  # a passage square
                if r % 2 == 0:  # between (r-1, c) and (r+1, c)
                    a, b = ((r - 2) // 2, (c - 1) // 2), (r // 2, (c - 1) // 2)
                else:
                    a, b = ((r - 1) // 2, (c - 2) // 2), ((r - 1) // 2, c // 2)
                if min(*a, *b) < 0 or max(*a, *b) >= cells:
                    return False  # a hole in the border
                edges.append((a[0] * cells + a[1], b[0] * cells + b[1]))
    if len(edges) != cells * cells - 1:
        return False
    parent = list(range(cells * cells))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    if len({find(x) for x in range(cells * cells)}) != 1:
        return False
    on_cell = all(p % 2 == 1 for p in (*maze.start, *maze.goal))
    return on_cell and maze.start != maze.goal


def bfs_path(maze: Maze) -> list[int]:
    """Shortest move sequence (token ids, without DONE) from START to GOAL by BFS."""
    size = maze.size
    previous: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {maze.start: None}
    queue = deque([maze.start])
    while queue:
        position = queue.popleft()
        if position == maze.goal:
            break
        for move, (dr, dc) in MOVES.items():
            nxt = (position[0] + dr, position[1] + dc)
            if 0 <= nxt[0] < size and 0 <= nxt[1] < size and maze.open[nxt]:
                if nxt not in previous:
                    previous[nxt] = (position, move)
                    queue.append(nxt)
    if maze.goal not in previous:
        raise ValueError("bfs_path: GOAL is not reachable from START")
    moves: list[int] = []
    position = maze.goal
    while previous[position] is not None:
        position, move = previous[position]
        moves.append(move)
    return moves[::-1]


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------
def prompt_length(cells: int) -> int:
    """Tokens in a prompt: GRID_START + S*S squares + (S-1) NEWLINE + GRID_END."""
    size = 2 * _check_cells(cells) + 1
    return size * size + size + 1


def max_answer_length(cells: int) -> int:
    """Longest answer the sampler generates: one move per open square (2c^2 - 1) plus DONE.

    A shortest path never visits a square twice, so it has at most ``2c^2 - 2`` moves.
    """
    return 2 * _check_cells(cells) ** 2


def encode_prompt(maze: Maze) -> list[int]:
    """Token ids of the prompt (see the module docstring)."""
    tokens = [GRID_START]
    for r in range(maze.size):
        if r > 0:
            tokens.append(NEWLINE)
        for c in range(maze.size):
            if (r, c) == maze.start:
                tokens.append(START)
            elif (r, c) == maze.goal:
                tokens.append(GOAL)
            else:
                tokens.append(PATH if maze.open[r, c] else WALL)
    tokens.append(GRID_END)
    return tokens


def decode_prompt(tokens: list[int]) -> Maze:
    """Inverse of :func:`encode_prompt`; raises ValueError on a malformed prompt."""
    tokens = [int(t) for t in tokens]
    if len(tokens) < 3 or tokens[0] != GRID_START or tokens[-1] != GRID_END:
        raise ValueError("decode_prompt: a prompt starts with GRID_START and ends with GRID_END")
    rows: list[list[int]] = [[]]
    for token in tokens[1:-1]:
        if token == NEWLINE:
            rows.append([])
        elif token in (WALL, PATH, START, GOAL):
            rows[-1].append(token)
        else:
            raise ValueError(f"decode_prompt: unexpected token {VOCAB[token]} inside the grid")
    size = len(rows)
    if any(len(row) != size for row in rows):
        raise ValueError("decode_prompt: the grid must be square")
    array = np.array(rows)
    if (array == START).sum() != 1 or (array == GOAL).sum() != 1:
        raise ValueError("decode_prompt: exactly one START and one GOAL expected")
    start = tuple(int(v) for v in np.argwhere(array == START)[0])
    goal = tuple(int(v) for v in np.argwhere(array == GOAL)[0])
    return Maze(open=array != WALL, start=start, goal=goal)


def render(maze: Maze, moves: list[int] | None = None) -> str:
    """Text picture: ``#`` wall, ``.`` path, ``S``/``G`` start/goal, ``*`` squares on ``moves``."""
    chars = np.where(maze.open, ".", "#").astype(object)
    if moves is not None:
        r, c = maze.start
        for move in moves:
            if move not in MOVES:
                break
            r, c = r + MOVES[move][0], c + MOVES[move][1]
            if not (0 <= r < maze.size and 0 <= c < maze.size):
                break
            chars[r, c] = "*"
    chars[maze.start] = "S"
    chars[maze.goal] = "G"
    return "\n".join("".join(row) for row in chars)


def tokens_to_text(tokens: list[int]) -> str:
    """Space-separated token names."""
    return " ".join(VOCAB[int(t)] for t in tokens)


# --------------------------------------------------------------------------------------------
# verifier
# --------------------------------------------------------------------------------------------
def verify(maze: Maze, answer: list[int]) -> bool:
    r"""Replay ``answer`` (token ids) on ``maze``; the reward is 1 iff it is correct.

    Moves are applied one at a time from START. A move out of the grid or into a wall, or any
    token that is neither a move nor DONE, fails. The first DONE ends the answer: success iff the
    position is GOAL. An answer without DONE fails. Tokens after DONE are ignored.
    """
    r, c = maze.start
    for token in answer:
        token = int(token)
        if token == DONE:
            return (r, c) == maze.goal
        if token not in MOVES:
            return False
        r, c = r + MOVES[token][0], c + MOVES[token][1]
        if not (0 <= r < maze.size and 0 <= c < maze.size) or not maze.open[r, c]:
            return False
    return False


def verify_batch(
    open_grid: torch.Tensor, start: torch.Tensor, goal: torch.Tensor, answers: torch.Tensor
) -> torch.Tensor:
    r"""Vectorised :func:`verify` for a batch of answers, on any device.

    ===============  =============  =====================================
    argument         shape          meaning
    ===============  =============  =====================================
    ``open_grid``    ``(B, S, S)``  bool, walkable squares
    ``start``        ``(B, 2)``     long, (row, col) of START
    ``goal``         ``(B, 2)``     long, (row, col) of GOAL
    ``answers``      ``(B, L)``     long, generated tokens (PAD after DONE)
    returns          ``(B,)``       float rewards in {0, 1}
    ===============  =============  =====================================
    """
    if open_grid.ndim != 3 or answers.ndim != 2 or start.shape != (answers.shape[0], 2):
        raise ValueError(
            f"verify_batch: expected open_grid (B, S, S), start/goal (B, 2), answers "
            f"(B, L); got {tuple(open_grid.shape)}, {tuple(start.shape)}, "
            f"{tuple(answers.shape)}"
        )
    batch, size = open_grid.shape[0], open_grid.shape[1]
    device = answers.device
    delta = torch.zeros(VOCAB_SIZE, 2, dtype=torch.long, device=device)
    for token, (dr, dc) in MOVES.items():
        delta[token] = torch.tensor([dr, dc], device=device)
    is_move_table = torch.zeros(VOCAB_SIZE, dtype=torch.bool, device=device)
    is_move_table[list(MOVES)] = True
    position = start.clone().long()
    running = torch.ones(batch, dtype=torch.bool, device=device)
    success = torch.zeros(batch, dtype=torch.bool, device=device)
    rows = torch.arange(batch, device=device)
    for t in range(answers.shape[1]):
        token = answers[:, t]
        done = running & (token == DONE)
        success |= done & (position == goal).all(dim=1)
        moving = running & is_move_table[token]
        new_position = position + delta[token]
        inside = ((new_position >= 0) & (new_position < size)).all(dim=1)
        clamped = new_position.clamp(0, size - 1)
        walkable = inside & open_grid[rows, clamped[:, 0], clamped[:, 1]]
        ok_move = moving & walkable
        position = torch.where(ok_move[:, None], new_position, position)
        running = ok_move  # a DONE, a bad move or any other token ends the replay
    return success.float()
