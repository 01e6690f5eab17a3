"""AlphaZero (rlax_zoo.agents.alphazero): the loss, the game model, search with a perfect
value function, self-play records, the replay ring, learning tic-tac-toe, run folders."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import mcts
from rlax_zoo.agents import alphazero as az
from rlax_zoo.config import ConfigError, validate
from rlax_zoo.envs.board_games import GameState, board_index_jax, make_game, solve

TTT = make_game("tic_tac_toe")


@pytest.fixture(scope="module")
def solved():
    return solve(TTT)


def positions(solved):
    """Every reachable non-terminal tic-tac-toe position as a batched GameState."""
    index = np.flatnonzero(solved.optimal.any(-1))
    digits = (index[:, None] // 3 ** np.arange(9)) % 3
    board = np.where(digits == 2, -1, digits).reshape(-1, 3, 3).astype(np.int8)
    n = (board != 0).reshape(len(index), -1).sum(-1)
    return index, GameState(
        board=jnp.asarray(board),
        current_player=jnp.asarray(n % 2, jnp.int32),
        legal_action_mask=jnp.asarray((board == 0).reshape(len(index), -1)),
        terminated=jnp.zeros(len(index), bool),
        winner=jnp.full(len(index), -1, jnp.int32),
        rewards=jnp.zeros((len(index), 2)),
        num_moves=jnp.asarray(n, jnp.int32),
    )


def test_loss_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 4)).astype(np.float32)
    value = np.tanh(rng.normal(size=5)).astype(np.float32)
    pi = rng.dirichlet(np.ones(4), 5).astype(np.float32)
    pi[0] = [0.5, 0.5, 0.0, 0.0]  # zeros at (illegal) actions
    z = np.float32([1, -1, 0, 1, -1])
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.ones(2)}
    apply_fn = lambda p, obs: (jnp.asarray(logits), jnp.asarray(value))  # noqa: E731
    loss, (v_loss, p_loss) = az.alphazero_loss(params, apply_fn, None, pi, z, 0.01)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want_v = np.mean((z - value) ** 2)
    want_p = -np.mean((pi * log_p).sum(-1))
    l2 = np.sum(np.asarray(params["w"]) ** 2) + 2.0
    np.testing.assert_allclose(v_loss, want_v, rtol=1e-6)
    np.testing.assert_allclose(p_loss, want_p, rtol=1e-6)
    np.testing.assert_allclose(loss, want_v + want_p + 0.01 * l2, rtol=1e-6)


def test_game_model_edges():
    """The search's edges: the mover's reward, discount 0 once the game ends (-1 before),
    value 0 at the end, invalid actions = the new position's illegal ones."""
    root_fn, recurrent_fn = az.game_model(
        TTT, lambda p, obs: (jnp.zeros((len(obs), 9)), 0.5 + jnp.zeros(len(obs)))
    )
    # X: 0, 1 ; O: 3, 4 ; X to move: 2 wins, 5 does not
    state = TTT.init()
    for a in (0, 3, 1, 4):
        state = TTT.step(state, a)
    states = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    out, nxt = recurrent_fn(None, None, jnp.array([2, 5]), states)
    np.testing.assert_allclose(out.reward, [1.0, 0.0])
    np.testing.assert_allclose(out.discount, [0.0, -1.0])
    np.testing.assert_allclose(out.value, [0.0, 0.5])
    assert bool(np.all(out.invalid_actions[0]))  # the game is over
    np.testing.assert_array_equal(
        ~out.invalid_actions[1], np.asarray(nxt.board[1]).reshape(-1) == 0
    )
    # an edge out of a finished game is a no-op: reward 0, discount 0
    out2, _ = recurrent_fn(None, None, jnp.array([6, 6]), nxt)
    np.testing.assert_allclose(out2.reward[0], 0.0)
    np.testing.assert_allclose(out2.discount[0], 0.0)
    root = root_fn(None, states)
    np.testing.assert_allclose(root.value, [0.5, 0.5])


def test_search_with_a_perfect_value_function_plays_perfectly(solved):
    """With v = the solver's value of every position (and a flat prior), 16 simulations of
    PUCT find an optimal move at all 4520 reachable non-terminal tic-tac-toe positions."""
    values = jnp.asarray(np.nan_to_num(solved.values))

    def oracle(params, obs):  # noqa: ARG001
        own, opp = obs[..., 0], obs[..., 1]
        first = own.sum((1, 2)) == opp.sum((1, 2))  # player 0 to move
        board = jnp.where(first[:, None, None], own - opp, opp - own).astype(jnp.int8)
        return jnp.zeros(obs.shape[:1] + (9,)), values[board_index_jax(board)]

    root_fn, recurrent_fn = az.game_model(TTT, oracle)
    index, states = positions(solved)
    assert len(index) == 4520
    out = jax.jit(
        lambda s: mcts.search(
            None, jax.random.PRNGKey(0), root_fn(None, s), recurrent_fn, 16, ~s.legal_action_mask
        )
    )(states)
    best = np.argmax(np.asarray(out.action_weights), -1)
    assert solved.optimal[index, best].all()
    # playing the first legal move instead is often wrong: the check can fail
    first_legal = np.argmax(np.asarray(states.legal_action_mask), -1)
    assert solved.optimal[index, first_legal].mean() < 0.8


def small_config(**changes):
    base = dict(
        num_actors=32,
        num_simulations=16,
        channels=32,
        num_blocks=1,
        batch_size=128,
        replay_capacity=4096,
        updates_per_iteration=8,
        iterations=4,
        eval_every=2,
        eval_games=20,
    )
    base.update(changes)
    return az.AlphaZeroConfig(**base)


@pytest.mark.parametrize("tree_reuse", [False, True])
def test_self_play_records(tree_reuse):
    trainer = az.make_alphazero(small_config(tree_reuse=tree_reuse))
    state = trainer.init(jax.random.PRNGKey(0))
    rec = jax.tree.map(np.asarray, trainer.self_play(state.params, jax.random.PRNGKey(1)))
    if tree_reuse:  # the first search starts from an empty tree, as without reuse; later
        # searches continue the subtree of the move played, so their visit counts differ
        plain = az.make_alphazero(small_config()).self_play(state.params, jax.random.PRNGKey(1))
        np.testing.assert_array_equal(rec.policy[0], plain.policy[0])
        assert np.any(rec.policy[1] != np.asarray(plain.policy[1]))
    t, b = rec.valid.shape
    assert (t, b) == (9, 32)
    lengths = rec.valid.sum(0)
    assert np.all(rec.valid[:5])  # no game ends before its 5th move
    for g in range(b):  # valid moves come first; z alternates sign (zero-sum), constant if 0
        n = lengths[g]
        assert np.all(rec.valid[:n, g]) and not np.any(rec.valid[n:, g])
        z = rec.outcome[:n, g]
        np.testing.assert_array_equal(z[1:], -z[:-1])
        # the last mover of a decided game won it (tic-tac-toe has no illegal self-play moves)
        if z[-1] != 0:
            assert z[-1] == 1.0
        else:
            assert n == 9
        # the stones on the board match the move number, from the mover's side
        stones = rec.obs[:n, g].sum((1, 2))
        np.testing.assert_array_equal(stones[:, 0], np.arange(n) // 2)
        np.testing.assert_array_equal(stones[:, 1], (np.arange(n) + 1) // 2)
    pi = rec.policy[rec.valid]
    np.testing.assert_allclose(pi.sum(-1), 1.0, rtol=1e-5)
    occupied = rec.obs[rec.valid].sum(-1).reshape(-1, 9) > 0
    assert np.all(pi[occupied] == 0.0)  # only legal moves are searched


def sorted_rows(obs, policy, outcome):
    """Positions as rows (obs, pi, z), sorted: a replay's contents as a set."""
    rows = np.concatenate(
        [np.reshape(obs, (len(outcome), -1)), np.asarray(policy), np.asarray(outcome)[:, None]], 1
    )
    return rows[np.lexsort(rows.T[::-1])]


def test_continuous_self_play_first_iteration_is_the_lockstep_batch():
    """Continuous self-play's first iteration (max_moves moves from empty boards, the same
    keys) searches every live game as lockstep self-play does: it writes exactly the lockstep
    batch's positions, each game once, and no move of the games its slots restarted."""
    cfg = small_config(updates_per_iteration=0)
    lockstep = az.make_alphazero(cfg)
    continuous = az.make_alphazero(dataclasses.replace(cfg, self_play="continuous"))
    state = continuous.init(jax.random.PRNGKey(0))
    play_key = jax.random.split(state.key)[1]
    rec = jax.tree.map(np.asarray, lockstep.self_play(state.params, play_key))
    state, metrics = continuous.train_chunk(state, 1)
    n = int(state.replay.size)
    assert n == rec.valid.sum() and int(state.games) == 32
    np.testing.assert_array_equal(
        sorted_rows(state.replay.obs[:n], state.replay.policy[:n], state.replay.outcome[:n]),
        sorted_rows(rec.obs[rec.valid], rec.policy[rec.valid], rec.outcome[rec.valid]),
    )
    assert float(metrics["game_length"][0]) == pytest.approx(rec.valid.sum(0).mean())
    assert float(metrics["draws"][0]) == pytest.approx(np.mean(rec.outcome[0] == 0))


def test_continuous_games_span_iterations():
    """One slot, 4 moves an iteration, no training: games cross iteration boundaries and each
    enters the replay whole when it ends, in move order, with z from each mover's side."""
    cfg = small_config(
        num_actors=1, self_play="continuous", moves_per_iteration=4, updates_per_iteration=0
    )
    trainer = az.make_alphazero(cfg)
    state, metrics = trainer.train_chunk(trainer.init(jax.random.PRNGKey(4)), 12)
    games = int(state.games)
    assert games == int(np.sum(metrics["games_finished"])) >= 5  # 48 moves, <= 9 a game
    lengths = np.asarray(metrics["game_length"]) * np.asarray(metrics["games_finished"])
    n = int(state.replay.size)
    assert n == round(lengths.sum()) == 48 - int(state.actors.length[0])
    obs, pi, z = (np.asarray(x)[:n] for x in state.replay[:3])
    start = 0
    for _ in range(games):
        # a game starts at an empty board; the next game starts where the next empty board is
        empty = np.flatnonzero(obs[start + 1 :].sum((1, 2, 3)) == 0)
        end = start + 1 + empty[0] if len(empty) else n
        game_obs, game_z = obs[start:end], z[start:end]
        k = end - start
        stones = game_obs.sum((1, 2))
        np.testing.assert_array_equal(stones[:, 0], np.arange(k) // 2)
        np.testing.assert_array_equal(stones[:, 1], (np.arange(k) + 1) // 2)
        # each position is the last one seen from the other side, plus the last mover's stone
        added = game_obs[1:, ..., 1] - game_obs[:-1, ..., 0]
        assert np.all(game_obs[1:, ..., 0] == game_obs[:-1, ..., 1])
        assert np.all(added.reshape(k - 1, -1).sum(-1) == 1) and np.all(added >= 0)
        np.testing.assert_array_equal(game_z[1:], -game_z[:-1])
        assert game_z[-1] == 1.0 or (game_z[-1] == 0.0 and k == 9)
        occupied = game_obs.sum(-1).reshape(k, 9) > 0
        assert np.all(pi[start:end][occupied] == 0.0)
        start = end
    assert start == n


def test_replay_ring():
    obs_shape = (1, 1, 2)
    replay = az.Replay(
        jnp.zeros((5,) + obs_shape), jnp.zeros((5, 3)), jnp.zeros(5), jnp.int32(0), jnp.int32(0)
    )

    def record(values, valid):
        v = jnp.asarray(values, jnp.float32)  # [T, B]
        return az.GameRecord(
            jnp.broadcast_to(v[..., None, None, None], v.shape + obs_shape),
            jnp.broadcast_to(v[..., None], v.shape + (3,)),
            v,
            jnp.asarray(valid),
        )

    # T = 2, B = 2: valid (0,0), (0,1), (1,0) -> rows 0, 1, 2
    replay = az.add_to_replay(replay, record([[1, 2], [3, 4]], [[True, True], [True, False]]))
    np.testing.assert_array_equal(replay.outcome, [1, 2, 3, 0, 0])
    assert int(replay.size) == 3 and int(replay.next) == 3
    replay = az.add_to_replay(replay, record([[5, 6], [7, 8]], [[True, True], [False, True]]))
    np.testing.assert_array_equal(replay.outcome, [8, 2, 3, 5, 6])  # wrapped around
    np.testing.assert_array_equal(replay.policy[:, 0], [8, 2, 3, 5, 6])
    np.testing.assert_array_equal(replay.obs[:, 0, 0, 1], [8, 2, 3, 5, 6])
    assert int(replay.size) == 5 and int(replay.next) == 1


@pytest.mark.parametrize(
    "self_play,tree_reuse", [("lockstep", False), ("continuous", False), ("lockstep", True)]
)
def test_learns_tic_tac_toe(self_play, tree_reuse):
    """A learning curve small enough for a test (24 iterations, about 8 s): the fraction of
    positions where the network's own move is optimal climbs from the untrained network's
    0.56 (measured: 0.78 lockstep, 0.81 continuous, 0.78 lockstep with tree reuse), and against
    perfect play the agent stops losing most games (measured: 0.99 of games lost before;
    after, 0.17 lockstep, 0.21 continuous and 0.11 with tree reuse)."""
    cfg = small_config(
        self_play=self_play,
        tree_reuse=tree_reuse,
        iterations=24,
        eval_every=24,
        eval_games=100,
        seed=3,
        learning_rate=3e-3,
        num_actors=64,
        num_simulations=32,
        replay_capacity=8192,
    )
    trainer = az.make_alphazero(cfg)
    state = trainer.init(jax.random.PRNGKey(cfg.seed))
    before = trainer.evaluate(state.params, jax.random.PRNGKey(7))
    state, metrics = trainer.train_chunk(state, cfg.iterations)
    after = trainer.evaluate(state.params, jax.random.PRNGKey(7))
    games = int(np.sum(metrics["games_finished"])) if self_play == "continuous" else 24 * 64
    assert int(state.iteration) == 24 and int(state.games) == games
    assert before["optimal_move_rate"] < 0.6 and after["optimal_move_rate"] > 0.72
    assert before["perfect_loss"] > 0.9 and after["perfect_loss"] < 0.4
    assert after["random_loss"] < 0.1
    assert np.asarray(metrics["loss"])[-1] < np.asarray(metrics["loss"])[0]


@pytest.mark.parametrize(
    "changes", [{}, dict(self_play="continuous", moves_per_iteration=5, tree_reuse=True)]
)
def test_run_folder_and_exact_resume(tmp_path, changes):
    cfg = small_config(iterations=4, eval_every=2, **changes)
    whole = az.run_alphazero(cfg, run_dir=str(tmp_path / "whole"), progress=False)
    part = az.run_alphazero(cfg, run_dir=str(tmp_path / "part"), progress=False, max_chunks=1)
    assert part.interrupted and not part.results
    resumed = az.run_alphazero(resume=str(tmp_path / "part"), progress=False)
    for a, b in zip(jax.tree.leaves(whole.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(a, b)
    with open(tmp_path / "whole" / "results.json") as f:
        results = json.load(f)
    assert results["iterations"] == 4 and results["games"] == int(whole.state.games)
    if not changes:
        assert results["games"] == 4 * 32
    else:  # games in progress crossed the checkpoint: some slots hold a game under way
        assert np.any(np.asarray(resumed.state.actors.length) > 0)
    assert results == resumed.results | {"train_seconds": results["train_seconds"]}
    for name in ("random", "perfect"):
        total = sum(results[f"{name}_{x}"] for x in ("win", "draw", "loss"))
        assert total == pytest.approx(1.0)
    assert results["perfect_win"] == 0.0  # nobody beats perfect play
    assert len(whole.metrics) == 2 and os.path.exists(tmp_path / "whole" / "metrics.csv")
    assert "against perfect play" in whole.summary()
    # a finished run evaluated again: its own key gives results.json's numbers exactly
    again = az.evaluate_alphazero(str(tmp_path / "whole"))
    assert again == {k: results[k] for k in again}
    searched = az.evaluate_alphazero(str(tmp_path / "whole"), seed=5, eval_simulations=8)
    assert set(searched) == set(again)
    with pytest.raises(ConfigError, match="learning_rate: changes the training"):
        az.evaluate_alphazero(str(tmp_path / "whole"), learning_rate=0.1)


def test_bad_configs():
    with pytest.raises(ConfigError, match="replay_capacity"):
        az.make_alphazero(small_config(replay_capacity=100))
    with pytest.raises(ConfigError, match="moves_per_iteration: only continuous"):
        az.make_alphazero(small_config(moves_per_iteration=3))
    with pytest.raises(ConfigError, match="self_play"):
        validate(small_config(self_play="async"))
    with pytest.raises(ConfigError, match="eval_games"):
        az.make_alphazero(small_config(eval_games=21))
    with pytest.raises(ConfigError, match="game"):
        validate(small_config(game="chess"))
    with pytest.raises(ConfigError, match="learning_rate"):
        validate(small_config(learning_rate=-1.0))


def test_connect_four_plays():
    """Connect Four (no solver): self-play runs, and evaluation reports the random opponent
    and, asked for, pure MCTS; an untrained network loses more to pure MCTS than to random
    play."""
    cfg = small_config(
        game="connect_four",
        num_actors=4,
        num_simulations=4,
        replay_capacity=168,
        opponent_simulations=32,
        eval_games=40,
    )
    trainer = az.make_alphazero(cfg)
    state = trainer.init(jax.random.PRNGKey(0))
    rec = trainer.self_play(state.params, jax.random.PRNGKey(1))
    assert rec.obs.shape == (42, 4, 6, 7, 2) and rec.policy.shape == (42, 4, 7)
    assert np.all(np.asarray(rec.valid.sum(0)) >= 7)  # nobody connects four in < 7 moves
    out = trainer.evaluate(state.params, jax.random.PRNGKey(2))
    assert set(out) == {f"{o}_{r}" for o in ("random", "mcts") for r in ("win", "draw", "loss")}
    for o in ("random", "mcts"):
        assert sum(out[f"{o}_{r}"] for r in ("win", "draw", "loss")) == pytest.approx(1.0)
    assert out["mcts_loss"] > out["random_loss"] + 0.3


def test_command_line(tmp_path, capsys):
    from rlax_zoo import cli

    run_dir = str(tmp_path / "cli")
    argv = ["train", "alphazero", "--run-dir", run_dir, "--no-progress", "--iterations", "2"]
    argv += ["--eval-every", "1", "--num-actors", "4", "--num-simulations", "2"]
    argv += ["--replay-capacity", "64", "--eval-games", "4", "--channels", "8"]
    assert cli.main(argv) == 0
    assert "against perfect play" in capsys.readouterr().out
    with open(os.path.join(run_dir, "config.json")) as f:
        assert json.load(f)["num_actors"] == 4
    with open(os.path.join(run_dir, "results.json")) as f:
        assert json.load(f)["games"] == 8
