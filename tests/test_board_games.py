"""Board games against a brute-force pure-Python rule book, hand-made positions, and the
perfect-play solver checked position by position against the same rule book."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.config import ConfigError
from rlax_zoo.envs import board_games as bg

TIC_TAC_TOE = bg.make_game("tic_tac_toe")
CONNECT_FOUR = bg.make_game("connect_four")


# --- a reference rule book, written from the rules alone (no precomputed lines) -------------


class Reference:
    """Pure-Python rules: `new()` and `step(state, action)` on dicts of plain Python values."""

    def __init__(self, rows, cols, connect, gravity):
        self.rows, self.cols, self.connect, self.gravity = rows, cols, connect, gravity
        self.num_actions = cols if gravity else rows * cols

    def new(self):
        board = [[0] * self.cols for _ in range(self.rows)]
        return dict(
            board=board,
            player=0,
            terminated=False,
            winner=-1,
            rewards=[0.0, 0.0],
            moves=0,
            legal=self.open_actions(board),
        )

    def open_actions(self, board):
        if self.gravity:
            return [board[0][c] == 0 for c in range(self.cols)]
        return [board[a // self.cols][a % self.cols] == 0 for a in range(self.num_actions)]

    def has_line(self, board, stone):
        """Scan every start cell in the four directions for `connect` stones in a row."""
        for r in range(self.rows):
            for c in range(self.cols):
                for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    run = 0
                    for i in range(self.connect):
                        rr, cc = r + i * dr, c + i * dc
                        if 0 <= rr < self.rows and 0 <= cc < self.cols and board[rr][cc] == stone:
                            run += 1
                    if run == self.connect:
                        return True
        return False

    def target(self, board, action):
        """The (row, col) the action fills, or None if it is illegal."""
        if not 0 <= action < self.num_actions:
            return None
        if self.gravity:
            for r in reversed(range(self.rows)):
                if board[r][action] == 0:
                    return r, action
            return None
        r, c = divmod(action, self.cols)
        return (r, c) if board[r][c] == 0 else None

    def step(self, state, action):
        if state["terminated"]:
            return dict(state, rewards=[0.0, 0.0])
        board = [row[:] for row in state["board"]]
        mover = state["player"]
        spot = self.target(board, action)
        if spot is None:  # illegal: the mover loses, nothing else changes
            rewards = [0.0, 0.0]
            rewards[mover], rewards[1 - mover] = -1.0, 1.0
            return dict(
                state,
                terminated=True,
                winner=1 - mover,
                rewards=rewards,
                legal=[False] * self.num_actions,
            )
        stone = 1 if mover == 0 else -1
        board[spot[0]][spot[1]] = stone
        moves = state["moves"] + 1
        won = self.has_line(board, stone)
        terminated = won or moves == self.rows * self.cols
        rewards = [0.0, 0.0]
        if won:
            rewards[mover], rewards[1 - mover] = 1.0, -1.0
        legal = [False] * self.num_actions if terminated else self.open_actions(board)
        return dict(
            board=board,
            player=1 - mover,
            terminated=terminated,
            winner=mover if won else -1,
            rewards=rewards,
            moves=moves,
            legal=legal,
        )


def reference_of(game):
    return Reference(game.rows, game.cols, game.connect, game.gravity)


def assert_same(state, ref):
    """A (numpy-converted, unbatched) GameState equals the reference state, field by field."""
    np.testing.assert_array_equal(state.board, np.array(ref["board"], np.int8))
    assert int(state.current_player) == ref["player"]
    np.testing.assert_array_equal(state.legal_action_mask, ref["legal"])
    assert bool(state.terminated) == ref["terminated"]
    assert int(state.winner) == ref["winner"]
    np.testing.assert_array_equal(state.rewards, np.array(ref["rewards"], np.float32))
    assert int(state.num_moves) == ref["moves"]


@functools.cache
def jitted(game):
    batch_step = jax.jit(jax.vmap(game.step))
    batch_observe = jax.jit(jax.vmap(game.observe))
    return jax.jit(game.step), batch_step, batch_observe


def batch_init(game, n):
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), game.init())


def play(game, actions):
    """The states after each of `actions`, played one by one from the empty board (jitted)."""
    step = jitted(game)[0]
    states = [game.init()]
    for a in actions:
        states.append(step(states[-1], jnp.int32(a)))
    return states


# --- the rules against the reference ---------------------------------------------------------


@pytest.mark.parametrize("game, batch", [(TIC_TAC_TOE, 200), (CONNECT_FOUR, 80)])
def test_step_matches_reference_rules_on_random_games(game, batch):
    """A batch of random games through jit(vmap(step)): the first half play only legal moves,
    the second half play a uniformly random action in [-2, num_actions + 1] 5% of the time
    (illegal ones included). Every field equals the reference's after every step, the
    observation too, and one extra step past the longest game checks the terminal no-op."""
    ref = reference_of(game)
    _, batch_step, batch_observe = jitted(game)
    rng = np.random.default_rng(0)
    refs = [ref.new() for _ in range(batch)]
    states = batch_init(game, batch)
    noisy = np.arange(batch) >= batch // 2
    for _ in range(game.max_moves + 1):
        actions = np.empty(batch, np.int32)
        for b, r in enumerate(refs):
            legal = np.flatnonzero(r["legal"])
            if len(legal) == 0 or (noisy[b] and rng.random() < 0.05):
                actions[b] = rng.integers(-2, game.num_actions + 2)
            else:
                actions[b] = rng.choice(legal)
        refs = [ref.step(r, int(a)) for r, a in zip(refs, actions, strict=True)]
        states = batch_step(states, jnp.asarray(actions))
        host, obs = jax.device_get(states), np.asarray(batch_observe(states))
        for b, r in enumerate(refs):
            assert_same(jax.tree.map(lambda x, b=b: x[b], host), r)
            sign = 1 if r["player"] == 0 else -1
            board = np.array(r["board"]) * sign
            np.testing.assert_array_equal(obs[b], np.stack([board == 1, board == -1], -1))
    assert all(r["terminated"] for r in refs)
    outcomes = [r["winner"] for r in refs]
    illegal_ends = sum(
        r["moves"] < game.max_moves and not ref.has_line(r["board"], 1 if r["winner"] == 0 else -1)
        for r in refs
    )
    # the comparison covered wins by both players and games lost by an illegal move
    assert outcomes.count(0) > 5 and outcomes.count(1) > 5 and illegal_ends > 2
    if game is TIC_TAC_TOE:
        assert outcomes.count(-1) > 5  # and draws


def test_init_shapes_and_dtypes():
    s = CONNECT_FOUR.init()
    assert s.board.shape == (6, 7) and s.board.dtype == jnp.int8
    assert s.legal_action_mask.shape == (7,) and s.legal_action_mask.dtype == jnp.bool_
    assert s.rewards.shape == (2,) and s.rewards.dtype == jnp.float32
    for leaf in (s.current_player, s.winner, s.num_moves):
        assert leaf.shape == () and leaf.dtype == jnp.int32
    assert s.terminated.shape == () and s.terminated.dtype == jnp.bool_
    assert (CONNECT_FOUR.num_actions, CONNECT_FOUR.max_moves) == (7, 42)
    assert CONNECT_FOUR.obs_shape == (6, 7, 2) and TIC_TAC_TOE.num_actions == 9
    # 6*4 rows + 3*7 columns + 2 * 3*4 diagonals; tic-tac-toe's 3 + 3 + 2
    assert CONNECT_FOUR.lines.shape == (69, 4) and TIC_TAC_TOE.lines.shape == (8, 3)


# --- hand-made positions -----------------------------------------------------------------------


def test_tic_tac_toe_diagonal_win():
    # X: 0, 4, 8 (the main diagonal); O: 1, 2
    states = play(TIC_TAC_TOE, [0, 1, 4, 2, 8])
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    assert bool(last.terminated) and int(last.winner) == 0 and int(last.num_moves) == 5
    np.testing.assert_array_equal(last.rewards, [1.0, -1.0])
    assert not np.asarray(last.legal_action_mask).any()
    np.testing.assert_array_equal(last.board, [[1, -1, -1], [0, 1, 0], [0, 0, 1]])


def test_connect_four_vertical_win_by_the_second_player():
    # player 0 drops into columns 0, 0, 1, 1 (no line); player 1 four times into column 3
    states = play(CONNECT_FOUR, [0, 3, 0, 3, 1, 3, 1, 3])
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    assert bool(last.terminated) and int(last.winner) == 1
    np.testing.assert_array_equal(last.rewards, [-1.0, 1.0])
    np.testing.assert_array_equal(np.asarray(last.board)[2:, 3], [-1, -1, -1, -1])  # bottom 4
    np.testing.assert_array_equal(np.asarray(last.board)[4:, :2], [[1, 1], [1, 1]])


def test_connect_four_anti_diagonal_win():
    # player 0 ends with (5,0) (4,1) (3,2) (2,3), rising to the right; the rest is filler
    actions = [0, 1, 1, 2, 3, 2, 2, 3, 6, 3, 3]
    states = play(CONNECT_FOUR, actions)
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    board = np.asarray(last.board)
    assert [board[5, 0], board[4, 1], board[3, 2], board[2, 3]] == [1, 1, 1, 1]
    assert bool(last.terminated) and int(last.winner) == 0 and int(last.num_moves) == 11
    np.testing.assert_array_equal(last.rewards, [1.0, -1.0])


def test_full_board_draw():
    # X O X / X O O / O X X: no line for either player
    states = play(TIC_TAC_TOE, [0, 4, 8, 1, 7, 6, 2, 5, 3])
    assert not any(bool(s.terminated) for s in states[:-1])
    last = states[-1]
    np.testing.assert_array_equal(last.board, [[1, -1, 1], [1, -1, -1], [-1, 1, 1]])
    assert bool(last.terminated) and int(last.winner) == -1 and int(last.num_moves) == 9
    np.testing.assert_array_equal(last.rewards, [0.0, 0.0])
    assert not np.asarray(last.legal_action_mask).any()


@pytest.mark.parametrize(
    "game, opening, illegal",
    [
        (TIC_TAC_TOE, [4], 4),  # player 1 plays the occupied centre
        (TIC_TAC_TOE, [4], 9),  # out of range
        (TIC_TAC_TOE, [], -1),  # out of range, by player 0
        (CONNECT_FOUR, [0, 0, 0, 0, 0, 0], 0),  # player 0 drops into the full column 0
        (CONNECT_FOUR, [2], 7),
    ],
)
def test_illegal_move_loses_and_changes_nothing_else(game, opening, illegal):
    before = play(game, opening)[-1]
    after = jitted(game)[0](before, jnp.int32(illegal))
    mover = int(before.current_player)
    assert bool(after.terminated) and int(after.winner) == 1 - mover
    expected = np.array([1.0, 1.0], np.float32)
    expected[mover] = -1.0
    np.testing.assert_array_equal(after.rewards, expected)
    np.testing.assert_array_equal(after.board, before.board)
    assert int(after.num_moves) == len(opening) and int(after.current_player) == mover
    assert not np.asarray(after.legal_action_mask).any()


def test_step_after_termination_is_a_no_op_with_zero_rewards():
    step = jitted(TIC_TAC_TOE)[0]
    won = play(TIC_TAC_TOE, [0, 1, 4, 2, 8])[-1]
    lost_by_illegal = step(play(TIC_TAC_TOE, [4])[-1], jnp.int32(4))
    for ended in (won, lost_by_illegal):
        assert np.abs(np.asarray(ended.rewards)).sum() == 2  # the ending step paid out
        for action in (3, 0, -5):  # a free cell, an occupied one, out of range
            again = step(ended, jnp.int32(action))
            for name in bg.GameState._fields:
                expected = np.zeros(2) if name == "rewards" else getattr(ended, name)
                np.testing.assert_array_equal(getattr(again, name), expected, err_msg=name)


def test_observe_flips_with_the_player():
    observe = jax.jit(TIC_TAC_TOE.observe)
    start, after_x, after_o = play(TIC_TAC_TOE, [4, 0])
    assert observe(start).shape == (3, 3, 2) and observe(start).dtype == jnp.float32
    assert not np.asarray(observe(start)).any()
    obs = np.asarray(observe(after_x))  # O to move: X's centre stone is the opponent's
    assert not obs[..., 0].any() and obs[1, 1, 1] == 1 and obs[..., 1].sum() == 1
    obs = np.asarray(observe(after_o))  # X to move: the centre is own, the corner the opponent's
    assert obs[1, 1, 0] == 1 and obs[..., 0].sum() == 1
    assert obs[0, 0, 1] == 1 and obs[..., 1].sum() == 1


# --- errors ------------------------------------------------------------------------------------


def test_make_game_and_constructor_errors_name_the_argument():
    with pytest.raises(ConfigError, match=r"game: unknown game 'chess'.*connect_four.*tic_tac_toe"):
        bg.make_game("chess")
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match=r"^rows: .*>= 1, got 0"):
        bg.BoardGame("g", rows=0, cols=3, connect=1, gravity=False)
    with pytest.raises(ConfigError, match=r"^cols: "):
        bg.BoardGame("g", rows=3, cols=2.0, connect=1, gravity=False)
    with pytest.raises(ConfigError, match=r"^connect: .*\[1, 4\], got 5"):
        bg.BoardGame("g", rows=3, cols=4, connect=5, gravity=False)
    with pytest.raises(ConfigError, match=r"^connect: "):
        bg.BoardGame("g", rows=3, cols=4, connect=0, gravity=False)
    with pytest.raises(ConfigError, match=r"^gravity: "):
        bg.BoardGame("g", rows=3, cols=4, connect=3, gravity=1)
    with pytest.raises(ConfigError, match=r"^game: solve needs rows \* cols <= 12.*42 cells"):
        bg.solve(CONNECT_FOUR)


# --- the solver ----------------------------------------------------------------------------------


@functools.cache
def solved(game):
    return bg.solve(game)


def test_board_index_numpy_and_jax_agree_with_the_definition():
    board = np.array([[1, -1, 0], [0, 0, 0], [0, 0, -1]], np.int8)
    assert bg.board_index(board) == 1 * 1 + 2 * 3 + 2 * 3**8
    boards = np.random.default_rng(1).integers(-1, 2, size=(50, 3, 4)).astype(np.int8)
    expected = [sum({0: 0, 1: 1, -1: 2}[v] * 3**i for i, v in enumerate(b.ravel())) for b in boards]
    np.testing.assert_array_equal(bg.board_index(boards), expected)
    np.testing.assert_array_equal(jax.jit(bg.board_index_jax)(jnp.asarray(boards)), expected)


def check_solution(game):
    """Enumerate the positions reachable by legal play with the reference rules; the solver's
    table must cover exactly these, with V = -1 / 0 at wins / draws and, everywhere else,
    V(s) = max over legal a of -V(child) and `optimal` = the argmax set (Bellman optimality,
    which fixes the values by induction on the moves left)."""
    ref, sol = reference_of(game), solved(game)
    start = ref.new()
    reachable, frontier = {int(bg.board_index(np.array(start["board"]))): start}, [start]
    non_terminal = 0
    while frontier:
        state = frontier.pop()
        index = int(bg.board_index(np.array(state["board"])))
        value = sol.values[index]
        if state["terminated"]:
            assert value == (-1.0 if state["winner"] >= 0 else 0.0)
            assert not sol.optimal[index].any()
            continue
        non_terminal += 1
        child_values = np.full(game.num_actions, -np.inf)
        for action in np.flatnonzero(state["legal"]):
            child = ref.step(state, int(action))
            child_index = int(bg.board_index(np.array(child["board"])))
            child_values[action] = -sol.values[child_index]
            if child_index not in reachable:
                reachable[child_index] = child
                frontier.append(child)
        assert value == child_values.max()
        np.testing.assert_array_equal(sol.optimal[index], child_values == value)
    assert set(np.flatnonzero(~np.isnan(sol.values))) == set(reachable)
    return len(reachable), non_terminal


def test_solver_tic_tac_toe_is_a_draw_with_the_known_position_counts():
    sol = solved(TIC_TAC_TOE)
    assert sol.values.shape == (3**9,) and sol.values.dtype == np.float32
    assert sol.optimal.shape == (3**9, 9) and sol.optimal.dtype == np.bool_
    assert sol.values[0] == 0.0
    assert (~np.isnan(sol.values)).sum() == 5478 and sol.optimal.any(axis=1).sum() == 4520
    assert check_solution(TIC_TAC_TOE) == (5478, 4520)
    assert sol.optimal[0].all()  # every opening move draws


def test_solver_on_small_gravity_games():
    """With gravity: the Bellman check on 3 rows x 4 columns, 3 in a row (a first-player win
    from every opening column), and on 2 x 2, 2 in a row, solved by hand: any two cells form a
    line, so the first player's second stone always wins."""
    game = bg.BoardGame("mini_connect", rows=3, cols=4, connect=3, gravity=True)
    reachable, non_terminal = check_solution(game)
    assert 0 < non_terminal < reachable
    assert solved(game).values[0] == 1.0 and solved(game).optimal[0].all()
    tiny = bg.BoardGame("tiny_connect", rows=2, cols=2, connect=2, gravity=True)
    check_solution(tiny)
    sol = solved(tiny)
    assert sol.values[0] == 1.0 and sol.optimal[0].all()
    after_reply = bg.board_index(np.array([[-1, 0], [1, 0]]))  # X, then O on top, in column 0
    assert sol.values[after_reply] == 1.0
    np.testing.assert_array_equal(sol.optimal[after_reply], [False, True])  # column 0 is full
    assert np.isnan(sol.values[bg.board_index(np.array([[1, 0], [0, 0]]))])  # a floating stone


def test_solver_must_block_and_wins_at_once():
    sol = solved(TIC_TAC_TOE)
    # X X . / . O . / . . .  with O to move: only the block at 2 saves O, and it draws
    block = np.array([[1, 1, 0], [0, -1, 0], [0, 0, 0]])
    i = bg.board_index(block)
    np.testing.assert_array_equal(np.flatnonzero(sol.optimal[i]), [2])
    assert sol.values[i] == 0.0
    # X X . / O O . / . . .  with X to move: 2 wins now; any other move lets O win at 5
    win = np.array([[1, 1, 0], [-1, -1, 0], [0, 0, 0]])
    i = bg.board_index(win)
    np.testing.assert_array_equal(np.flatnonzero(sol.optimal[i]), [2])
    assert sol.values[i] == 1.0
    # O to move after X's winning line would have been completed: a lost terminal position
    assert sol.values[bg.board_index(np.array([[1, 1, 1], [-1, -1, 0], [0, 0, 0]]))] == -1.0


def test_solver_never_loses_and_draws_against_itself():
    """Jitted, vmapped games where a seat picks uniformly among `optimal[board_index(board)]`
    (the solver) or among the legal actions (random): solver vs solver always draws; the
    solver in either seat never loses to a random player over 200 games, and wins most."""
    game = TIC_TAC_TOE
    optimal = jnp.asarray(solved(game).optimal)

    @jax.jit
    def play_batch(key, solver_seats):  # solver_seats [B, 2] bool
        def move(state, key):
            solver_mask = optimal[bg.board_index_jax(state.board)] & state.legal_action_mask
            use_solver = solver_seats[jnp.arange(len(key)), state.current_player]
            mask = jnp.where(use_solver[:, None], solver_mask, state.legal_action_mask)
            logits = jnp.where(mask, 0.0, -jnp.inf)
            logits = jnp.where(state.terminated[:, None], 0.0, logits)  # any action: a no-op
            actions = jax.vmap(jax.random.categorical)(key, logits).astype(jnp.int32)
            return jax.vmap(game.step)(state, actions), None

        batch = solver_seats.shape[0]
        keys = jax.random.split(key, (game.max_moves, batch))
        final, _ = jax.lax.scan(move, batch_init(game, batch), keys)
        return final

    seats = np.zeros((300, 2), bool)
    seats[:100] = True  # solver vs solver
    seats[100:200, 0] = True  # solver first
    seats[200:, 1] = True  # solver second
    final = jax.device_get(play_batch(jax.random.PRNGKey(0), jnp.asarray(seats)))
    assert final.terminated.all()
    assert (final.winner[:100] == -1).all()
    solver_first, solver_second = final.winner[100:200], final.winner[200:]
    assert (solver_first != 1).all() and (solver_second != 0).all()
    assert (solver_first == 0).mean() > 0.8 and (solver_second == 1).mean() > 0.5
