"""Two-player, zero-sum, perfect-information board games as pure JAX functions.

The m,n,k-games (tic-tac-toe is the 3,3,3-game) and their gravity variants (Connect Four,
6 rows x 7 columns, 4 in a row; solved by Allis 1988 and Allen 1989), for AlphaZero self-play
and MCTS (Silver et al. 2018). Written in the style of sotetsuk/pgx (a small state pytree with
`legal_action_mask`, per-player `rewards` and `terminated`), with our own code.

Board: `board[r, c]` is +1 for a stone of player 0, -1 for a stone of player 1, 0 for an empty
cell; row 0 is the top row, so with gravity a stone falls to the largest empty row index of
its column. Player 0 moves first and the players alternate. Actions:

  gravity=False   action = r * cols + c places a stone on cell (r, c)     (num_actions = rows*cols)
  gravity=True    action = c drops a stone into column c                   (num_actions = cols)

The mover wins on completing `connect` of their stones in a row, a column or either diagonal
(the lines are precomputed once, in NumPy, as flat cell indices [L, connect]); the game is a
draw when the board is full with no winner. Rewards are those of the LAST step: +1 to the
winner and -1 to the loser on a winning move, 0 to both otherwise (draws included).

Illegal moves (an occupied cell, a full column, an action outside [0, num_actions)) end the
game as a loss for the mover, as pgx does: reward -1 to the mover, +1 to the opponent,
winner = the opponent. Unlike pgx, an illegal move changes nothing else: the board,
`num_moves` and `current_player` stay as they were, so `num_moves` is always the number of
stones on the board and `current_player == num_moves % 2` always holds. A step on a terminated
state is a no-op that returns the state with rewards zeroed. After the game ends
`current_player` is the player who would have moved next and `legal_action_mask` is all False.

Every function of a `BoardGame` is pure and unbatched: run a batch of games with
`jax.vmap(game.step)`; all of it works under `jax.jit` (a `BoardGame` is frozen and hashable,
so it can also be a static argument).

`solve` computes perfect play for small games (rows * cols <= 12) with memoized negamax
(Knuth and Moore 1975) in NumPy: the value of every reachable position for the player to move
and the set of value-maximising actions, indexed by `board_index` (base-3 digits of the cells),
so a jitted player can look up `optimal[board_index_jax(board)]`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlax_zoo.config import ConfigError

MAX_SOLVE_CELLS = 12  # solve() refuses boards with more cells: its tables have 3**cells rows
_MAX_INDEX_CELLS_JAX = 19  # 3**19 - 1 < 2**31: board_index_jax is exact in int32 up to here
_MAX_INDEX_CELLS_NUMPY = 39  # 3**39 - 1 < 2**63: board_index is exact in int64 up to here


class GameState(NamedTuple):
    """One game's state; batch it with `jax.vmap` (every leaf gains a leading axis)."""

    board: jax.Array  # [rows, cols] int8: +1 a stone of player 0, -1 of player 1, 0 empty
    current_player: jax.Array  # int32 scalar, 0 or 1: who moves next (player 0 moves first)
    legal_action_mask: jax.Array  # [num_actions] bool; all False once terminated
    terminated: jax.Array  # bool scalar: a win, a draw (board full) or an illegal move
    winner: jax.Array  # int32 scalar: 0 or 1, or -1 (none yet, or a draw)
    rewards: jax.Array  # [2] float32: each player's reward from the LAST step (+1, -1 or 0)
    num_moves: jax.Array  # int32 scalar: stones on the board (legal moves played)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def winning_lines(rows: int, cols: int, connect: int) -> np.ndarray:
    """All `connect`-in-a-row lines of a rows x cols board (rows, columns, both diagonals) as
    flat cell indices r * cols + c: [L, connect] int32, each line's cells in order, no line
    twice (for connect = 1 every cell is one line)."""
    lines = set()
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                end_r, end_c = r + dr * (connect - 1), c + dc * (connect - 1)
                if 0 <= end_r < rows and 0 <= end_c < cols:
                    line = tuple((r + dr * i) * cols + (c + dc * i) for i in range(connect))
                    lines.add(line)
    return np.array(sorted(lines), dtype=np.int32).reshape(-1, connect)


@dataclasses.dataclass(frozen=True)
class BoardGame:
    """A k-in-a-row game on a rows x cols board (module docstring for the rules).

    Attributes:
      name: a label (e.g. "tic_tac_toe").
      rows, cols: the board's size (>= 1 each).
      connect: k, the number in a row (row, column or either diagonal) that wins;
        1 <= connect <= max(rows, cols).
      gravity: True: an action is a column and the stone drops to the lowest empty cell
        (Connect Four); False: an action is a cell index r * cols + c (tic-tac-toe).
    """

    name: str
    rows: int
    cols: int
    connect: int
    gravity: bool

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name: must be non-empty text, got {self.name!r}")
        for arg in ("rows", "cols"):
            value = getattr(self, arg)
            if not _is_int(value) or value < 1:
                raise ConfigError(f"{arg}: must be an integer >= 1, got {value!r}")
        longest = max(self.rows, self.cols)
        if not _is_int(self.connect) or not 1 <= self.connect <= longest:
            raise ConfigError(
                f"connect: must be an integer in [1, max(rows, cols)] = [1, {longest}], "
                f"got {self.connect!r}"
            )
        if not isinstance(self.gravity, bool):
            raise ConfigError(f"gravity: must be True or False, got {self.gravity!r}")
        lines = winning_lines(self.rows, self.cols, self.connect)
        lines.setflags(write=False)
        object.__setattr__(self, "_lines", lines)  # not a field: eq and hash ignore it

    @property
    def num_actions(self) -> int:
        """cols with gravity (a column per action), else rows * cols (a cell per action)."""
        return self.cols if self.gravity else self.rows * self.cols

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """(rows, cols, 2): the shape of `observe`'s output."""
        return (self.rows, self.cols, 2)

    @property
    def max_moves(self) -> int:
        """rows * cols: no game lasts longer (a bound for a `lax.scan` over a whole game)."""
        return self.rows * self.cols

    @property
    def lines(self) -> np.ndarray:
        """[L, connect] int32 (read-only): every winning line as flat cell indices."""
        return self._lines

    def init(self) -> GameState:
        """The empty board, player 0 to move, every action legal."""
        return GameState(
            board=jnp.zeros((self.rows, self.cols), jnp.int8),
            current_player=jnp.array(0, jnp.int32),
            legal_action_mask=jnp.ones((self.num_actions,), bool),
            terminated=jnp.array(False),
            winner=jnp.array(-1, jnp.int32),
            rewards=jnp.zeros((2,), jnp.float32),
            num_moves=jnp.array(0, jnp.int32),
        )

    def step(self, state: GameState, action: jax.Array) -> GameState:
        """Play `action` (int32 scalar) for `state.current_player`: (GameState, action) ->
        GameState. A win, a full board or an illegal action (a loss for the mover) terminates;
        on a terminated state the step is a no-op with rewards zeroed. Unbatched: vmap it."""
        action = jnp.asarray(action, jnp.int32)
        cells = self.rows * self.cols
        in_range = (action >= 0) & (action < self.num_actions)
        column = jnp.clip(action, 0, self.num_actions - 1)
        flat = state.board.reshape(-1)
        if self.gravity:
            empty_in_column = jnp.sum(state.board[:, column] == 0)
            cell = (empty_in_column - 1) * self.cols + column  # the lowest empty row
            free = empty_in_column > 0
        else:
            cell = column
            free = flat[cell] == 0
        legal = in_range & free
        cell = jnp.where(legal, cell, 0)
        mover = state.current_player
        stone = jnp.where(mover == 0, 1, -1).astype(jnp.int8)
        placed = flat.at[cell].set(jnp.where(legal, stone, flat[cell]))
        won = legal & jnp.any(jnp.all(placed[jnp.asarray(self._lines)] == stone, axis=1))
        num_moves = state.num_moves + legal.astype(jnp.int32)
        terminated = won | ~legal | (num_moves >= cells)
        opponent = 1 - mover
        winner = jnp.where(won, mover, jnp.where(legal, -1, opponent)).astype(jnp.int32)
        mover_reward = jnp.where(won, 1.0, jnp.where(legal, 0.0, -1.0)).astype(jnp.float32)
        rewards = jnp.where(jnp.arange(2) == mover, mover_reward, 0.0 - mover_reward)
        board = placed.reshape(self.rows, self.cols)
        open_cells = board[0] == 0 if self.gravity else placed == 0
        played = GameState(
            board=board,
            current_player=jnp.where(legal, opponent, mover).astype(jnp.int32),
            legal_action_mask=open_cells & ~terminated,
            terminated=terminated,
            winner=winner,
            rewards=rewards.astype(jnp.float32),
            num_moves=num_moves,
        )
        unchanged = state._replace(rewards=jnp.zeros_like(state.rewards))
        return jax.tree.map(
            lambda old, new: jnp.where(state.terminated, old, new), unchanged, played
        )

    def observe(self, state: GameState) -> jax.Array:
        """[rows, cols, 2] float32 from the current player's side: plane 0 = the mover's
        stones, plane 1 = the opponent's (AlphaZero's player-relative input planes)."""
        own = jnp.where(state.current_player == 0, 1, -1).astype(state.board.dtype)
        relative = state.board * own
        return jnp.stack([relative == 1, relative == -1], axis=-1).astype(jnp.float32)


GAMES: dict[str, BoardGame] = {
    "tic_tac_toe": BoardGame("tic_tac_toe", rows=3, cols=3, connect=3, gravity=False),
    "connect_four": BoardGame("connect_four", rows=6, cols=7, connect=4, gravity=True),
}


def make_game(game: str) -> BoardGame:
    """The board game named `game`, one of `GAMES` ("tic_tac_toe", "connect_four")."""
    if game not in GAMES:
        raise ConfigError(f"game: unknown game {game!r}; one of {sorted(GAMES)}")
    return GAMES[game]


def board_index(board) -> np.ndarray:
    """NumPy: the position index sum_i digit(cell_i) 3**i over the flat cells i = r * cols + c,
    digit(0) = 0, digit(+1) = 1, digit(-1) = 2. board [..., rows, cols] -> [...] int64."""
    board = np.asarray(board)
    flat = board.reshape(board.shape[:-2] + (-1,))
    if flat.shape[-1] > _MAX_INDEX_CELLS_NUMPY:
        raise ConfigError(f"board: at most {_MAX_INDEX_CELLS_NUMPY} cells, got {flat.shape[-1]}")
    digits = np.where(flat == -1, 2, flat).astype(np.int64)
    return digits @ (3 ** np.arange(flat.shape[-1], dtype=np.int64))


def board_index_jax(board: jax.Array) -> jax.Array:
    """JAX (jit- and vmap-safe) `board_index`: board [..., rows, cols] -> [...] int32; exact for
    boards of up to 19 cells."""
    flat = board.reshape(board.shape[:-2] + (-1,))
    if flat.shape[-1] > _MAX_INDEX_CELLS_JAX:
        raise ConfigError(f"board: at most {_MAX_INDEX_CELLS_JAX} cells, got {flat.shape[-1]}")
    digits = jnp.where(flat == -1, 2, flat).astype(jnp.int32)
    powers = jnp.asarray(3 ** np.arange(flat.shape[-1]), jnp.int32)
    return jnp.sum(digits * powers, axis=-1)


class SolvedGame(NamedTuple):
    """Perfect play for every position reachable from the empty board (index: `board_index`).

    values: [3**(rows*cols)] float32: the game-theoretic value for the player to move
      (+1 win, 0 draw, -1 loss). Terminal positions get theirs too: -1 where the last move
      completed a line, 0 for a full-board draw. NaN marks unreachable positions.
    optimal: [3**(rows*cols), num_actions] bool: the legal actions of maximal value at each
      reachable non-terminal position; all False at terminal and unreachable positions.
    """

    values: np.ndarray
    optimal: np.ndarray


def solve(game: BoardGame) -> SolvedGame:
    """Memoized negamax (Knuth and Moore 1975), V(s) = max_a -V(s'), V(lost) = -1,
    V(draw) = 0, over every position reachable by legal play (the player to move follows from
    the stone counts: player 0 when they are equal). Only for rows * cols <= 12 (the tables
    have 3**(rows*cols) rows); tic-tac-toe takes well under a second."""
    cells = game.rows * game.cols
    if cells > MAX_SOLVE_CELLS:
        raise ConfigError(
            f"game: solve needs rows * cols <= {MAX_SOLVE_CELLS} (tables of 3**(rows*cols) "
            f"positions); {game.name!r} has {cells} cells"
        )
    through = [[tuple(line) for line in game.lines.tolist() if c in line] for c in range(cells)]
    powers = [3**i for i in range(cells)]
    board = [0] * cells
    values: dict[int, float] = {}
    best: dict[int, list[int]] = {}

    def target(action: int) -> int:  # the cell the action fills, -1 if illegal
        if not game.gravity:
            return action if board[action] == 0 else -1
        for r in range(game.rows - 1, -1, -1):
            if board[r * game.cols + action] == 0:
                return r * game.cols + action
        return -1

    def negamax(index: int, stone: int, moves: int) -> float:
        if index in values:
            return values[index]
        action_values = {}
        for action in range(game.num_actions):
            cell = target(action)
            if cell < 0:
                continue
            board[cell] = stone
            child = index + (1 if stone == 1 else 2) * powers[cell]
            if any(all(board[i] == stone for i in line) for line in through[cell]):
                values[child] = -1.0  # the opponent, to move, has lost
                action_values[action] = 1.0
            elif moves + 1 == cells:
                values[child] = 0.0  # full board: a draw
                action_values[action] = 0.0
            else:
                action_values[action] = 0.0 - negamax(child, -stone, moves + 1)  # no -0.0
            board[cell] = 0
        value = max(action_values.values())
        values[index] = value
        best[index] = [a for a, v in action_values.items() if v == value]
        return value

    negamax(0, 1, 0)
    value_table = np.full((3**cells,), np.nan, np.float32)
    value_table[list(values)] = list(values.values())
    optimal = np.zeros((3**cells, game.num_actions), bool)
    for index, actions in best.items():
        optimal[index, actions] = True
    return SolvedGame(values=value_table, optimal=optimal)
