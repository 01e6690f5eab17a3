"""AlphaZero: MCTS self-play and a policy-value network, on board games, one file.

Papers: Silver et al. 2017, "Mastering the game of Go without human knowledge" (AlphaGo Zero:
self-play with MCTS, the loss of eq. (1)); Silver et al. 2018, "A general reinforcement
learning algorithm that masters chess, shogi, and Go through self-play" (AlphaZero: one
network trained continually, no evaluator gate, draws scored 0, Dirichlet root noise).

One iteration, jitted functions of an explicit state:
  1. Self-play: `num_actors` games from the empty board, in lockstep (or continuous: below).
     At every move each game runs `num_simulations` simulations of PUCT search
     (`rlax_zoo.mcts.search`) whose model is the game's own rules and whose leaves are
     valued by the network (f_theta(s) = (p, v)),
     with Dirichlet noise on the root prior. The move is drawn in proportion to the root's
     visit counts for the first `temperature_moves` moves of a game and is the most visited
     one after that (AlphaGo Zero, "Self-play", tau -> 0). Each position keeps
     (s_t, pi_t, z_t): pi_t the root's visit distribution, z_t = +1 / -1 / 0 the game's
     outcome for the player to move at s_t.
  2. The positions go into a ring buffer of the `replay_capacity` newest.
  3. `updates_per_iteration` Adam steps on minibatches drawn uniformly from the buffer, on
     AlphaGo Zero's eq. (1):  l = (z - v)^2 - pi^T log p + c ||theta||^2.

With `self_play` lockstep (the default) the games in a batch all run `max_moves` moves; a game
that has ended idles (its search is computed and discarded), the price of a batch of fixed
shape. With `self_play` continuous each of the `num_actors` slots keeps its game across
iterations: an iteration plays `moves_per_iteration` moves in every slot, a slot whose game
ends starts a new one at the next move, and the ended game's positions enter the buffer with
its outcome, so every search is of a live position (AlphaZero's actors, which play without
pause while the learner trains, in lockstep form). A game's moves may then come from
successive networks, as in the papers' asynchronous self-play. With `tree_reuse` (either
mode) each game's next search continues the subtree of the move just played (AlphaGo Zero's
tree reuse, `rlax_zoo.mcts.subtree`): its num_simulations simulations add to the visits that
subtree already holds, so pi_t counts both; trees have 2 num_simulations + 1 nodes.
Evaluation's searches start afresh at every move.

Evaluation (after each chunk, and at the end): games against a uniformly random player and,
for games small enough to solve (tic-tac-toe), against a perfect player (NumPy negamax,
`rlax_zoo.envs.board_games.solve`) that picks uniformly among its optimal moves; the agent
takes each seat in half the games and plays the network's most probable legal move
(`eval_simulations` = 0) or the most visited move of a search without noise. With
`opponent_simulations` > 0 a third opponent is pure MCTS: the same search with a flat prior
and zero leaf values, so only won and lost games inform it (it takes a win and blocks a loss
within its horizon), with root noise so that its games against the deterministic agent vary.
For a solved game the metrics also give `optimal_move_rate`: the fraction of the reachable
positions where the network's most probable legal move is optimal (4520 in tic-tac-toe).

`rlax-zoo train alphazero --game tic_tac_toe` writes a run folder (config.json, metrics.csv,
results.json, checkpoints/) through `rlax_zoo.runner.drive_config_chunks`: resume, Ctrl-C
(checkpoint, then exit) and a time budget as for every chunked trainer.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo import mcts
from rlax_zoo.checkpointing import restore_run_state
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.envs.board_games import (
    GAMES,
    MAX_SOLVE_CELLS,
    BoardGame,
    GameState,
    board_index_jax,
    make_game,
    solve,
)
from rlax_zoo.networks import PolicyValueNetwork
from rlax_zoo.runner import (
    ChunkRun,
    default_run_dir,
    drive_config_chunks,
    finished_run_config,
    prepare_run_dir,
    write_results,
)


@dataclasses.dataclass(frozen=True)
class AlphaZeroConfig:
    """Every AlphaZero hyperparameter; each is a flag of `rlax-zoo train alphazero`."""

    game: str = option("tic_tac_toe", "The board game.", choices=tuple(GAMES))
    seed: int = option(0, "Random seed (network init, self-play, evaluation).", low=0)
    num_actors: int = option(64, "Self-play games played at once, per iteration.", low=1)
    num_simulations: int = option(32, "MCTS simulations per self-play move.", low=1)
    pb_c_init: float = option(1.25, "c_init of PUCT's exploration rate c(s).", low=0.0)
    pb_c_base: float = option(19652.0, "c_base of c(s).", low=0.0, low_open=True)
    dirichlet_alpha: float = option(
        0.5, "Dirichlet alpha of the root noise.", low=0.0, low_open=True
    )
    dirichlet_fraction: float = option(
        0.25, "Weight eps of the root noise (0: none).", low=0.0, high=1.0
    )
    self_play: str = option(
        "lockstep",
        "How the num_actors games are played. lockstep: each iteration plays num_actors new "
        "games from the empty board to the end, max_moves moves, a finished game idling until "
        "the last ends. continuous: each iteration plays moves_per_iteration moves in every "
        "slot; a slot whose game ends starts a new one at once, and a game's positions enter "
        "the replay when it ends, so games span iterations and no search is spent on ended "
        "games.",
        choices=("lockstep", "continuous"),
    )
    moves_per_iteration: int = option(
        0,
        "Continuous self-play: moves each slot plays per iteration (0: the game's max_moves, "
        "the search cost of one lockstep iteration).",
        low=0,
    )
    tree_reuse: bool = option(
        False,
        "Self-play keeps the subtree of the move played for the next move's search (AlphaGo "
        "Zero's tree reuse): each search adds num_simulations simulations to the visits the "
        "subtree already holds; trees have 2 * num_simulations + 1 nodes, of which the "
        "oldest num_simulations + 1 of a subtree are kept.",
    )
    temperature_moves: int = option(
        4,
        "Moves of each game drawn in proportion to the root's visit counts; later moves are "
        "the most visited.",
        low=0,
    )
    channels: int = option(64, "Channels of the network's convolutions.", low=1)
    num_blocks: int = option(2, "Residual blocks of the network.", low=0)
    learning_rate: float = option(1e-3, "Adam step size.", low=0.0, low_open=True)
    l2: float = option(1e-4, "c of eq. (1): the weight of ||theta||^2 in the loss.", low=0.0)
    batch_size: int = option(256, "Positions per gradient step.", low=1)
    replay_capacity: int = option(
        20000, "Newest self-play positions kept (at least num_actors * the game's length).", low=1
    )
    updates_per_iteration: int = option(8, "Gradient steps after each self-play batch.", low=0)
    iterations: int = option(150, "Iterations (self-play batch + updates).", low=1)
    eval_every: int = option(25, "Iterations per chunk; metrics after each chunk.", low=1)
    checkpoint_every: int = option(1, "Chunks between checkpoints.", low=1)
    eval_games: int = option(
        200, "Evaluation games per opponent (half with each seat); even.", low=2
    )
    eval_simulations: int = option(
        0, "MCTS simulations per evaluation move (0: the network's most probable move).", low=0
    )
    opponent_simulations: int = option(
        0,
        "Also evaluate against pure MCTS with this many simulations a move (a flat prior and "
        "zero leaf values: only won and lost games count; 0: no such opponent).",
        low=0,
    )
    time_budget_s: float = time_budget_option()


class Replay(NamedTuple):
    """The newest self-play positions: obs [R, H, W, 2], policy [R, A] (pi), outcome [R] (z),
    size (filled rows) and next (the row written next), int32 scalars."""

    obs: jax.Array
    policy: jax.Array
    outcome: jax.Array
    size: jax.Array
    next: jax.Array


class ActorGames(NamedTuple):
    """Continuous self-play's games in progress, one per slot: states (GameState [B]); the
    positions recorded so far in each game, time-major as in GameRecord: obs
    [T, B, H, W, 2] and policy [T, B, A] (rows at and after `length` are stale); length [B]
    int32, the positions recorded in the slot's current game; tree (with tree_reuse) the
    search tree each slot's next move continues (`rlax_zoo.mcts.subtree`)."""

    states: GameState
    obs: jax.Array
    policy: jax.Array
    length: jax.Array
    tree: mcts.Tree | None = None


class AlphaZeroState(NamedTuple):
    params: Any
    opt_state: Any
    replay: Replay
    key: jax.Array
    iteration: jax.Array  # int32
    games: jax.Array  # int32: self-play games finished
    actors: ActorGames | None = None  # continuous self-play only


class GameRecord(NamedTuple):
    """A self-play batch, time-major: obs [T, B, H, W, 2], policy [T, B, A], outcome [T, B]
    (z for the player to move), valid [T, B] (the game had not ended before move t)."""

    obs: jax.Array
    policy: jax.Array
    outcome: jax.Array
    valid: jax.Array


def alphazero_loss(params, apply_fn, obs, policy, outcome, l2: float):
    """AlphaGo Zero's eq. (1), batch-averaged: (z - v)^2 - pi^T log p + c ||theta||^2.

    obs [N, H, W, 2], policy (pi) [N, A], outcome (z) [N] -> (loss, (value_loss, policy_loss)).
    pi is 0 at illegal actions, so their logits do not enter the policy term.
    """
    logits, value = apply_fn(params, obs)
    value_loss = jnp.mean((outcome - value) ** 2)
    log_p = jax.nn.log_softmax(logits)
    policy_loss = -jnp.mean(jnp.sum(jnp.where(policy > 0, policy * log_p, 0.0), -1))
    l2_term = sum(jnp.sum(w**2) for w in jax.tree.leaves(params))
    return value_loss + policy_loss + l2 * l2_term, (value_loss, policy_loss)


def add_to_replay(replay: Replay, record: GameRecord) -> Replay:
    """Write a self-play batch's valid positions into the ring buffer, in (move, game) order,
    from row `replay.next` on, wrapping around; the buffer's capacity R must be at least the
    batch's T * B positions."""
    cap = replay.outcome.shape[0]
    valid = record.valid.reshape(-1)
    rank = jnp.cumsum(valid) - 1
    rows = jnp.where(valid, (replay.next + rank) % cap, cap)  # row cap: dropped

    def put(buf, x):
        return buf.at[rows].set(x.reshape((-1,) + buf.shape[1:]), mode="drop")

    count = valid.sum().astype(jnp.int32)
    return Replay(
        put(replay.obs, record.obs),
        put(replay.policy, record.policy),
        put(replay.outcome, record.outcome),
        jnp.minimum(replay.size + count, cap),
        (replay.next + count) % cap,
    )


def game_model(game: BoardGame, apply_fn):
    """The search's model: the game's rules with the network's (p, v) at the leaves.

    Returns (root_fn, recurrent_fn) for `rlax_zoo.mcts.search`: root_fn(params, states [B])
    -> RootFnOutput; recurrent_fn's edge has the mover's reward, discount -1 (the other player
    moves next) or 0 once the game has ended, and value 0 at ended games."""

    def evaluate(params, states):
        return apply_fn(params, jax.vmap(game.observe)(states))

    def root_fn(params, states):
        logits, value = evaluate(params, states)
        return mcts.RootFnOutput(logits, value, states)

    def recurrent_fn(params, key, action, states):  # noqa: ARG001
        mover = states.current_player
        nxt = jax.vmap(game.step)(states, action)
        logits, value = evaluate(params, nxt)
        reward = jnp.take_along_axis(nxt.rewards, mover[:, None], 1)[:, 0]
        out = mcts.RecurrentFnOutput(
            reward=reward,
            discount=jnp.where(nxt.terminated, 0.0, -1.0),
            prior_logits=logits,
            value=jnp.where(nxt.terminated, 0.0, value),
            invalid_actions=~nxt.legal_action_mask,
        )
        return out, nxt

    return root_fn, recurrent_fn


def outcome_for(winner, player):
    """z: +1 where `player` won, -1 where they lost, 0 for a draw (winner -1)."""
    return jnp.where(winner < 0, 0.0, jnp.where(winner == player, 1.0, -1.0))


def check_config(config: AlphaZeroConfig) -> BoardGame:
    """The config's game, or ConfigError for fields that do not fit it together."""
    game = make_game(config.game)
    if config.replay_capacity < config.num_actors * game.max_moves:
        raise ConfigError(
            f"replay_capacity: must hold one self-play batch, num_actors * {game.max_moves} "
            f"moves = {config.num_actors * game.max_moves}; got {config.replay_capacity}"
        )
    if config.moves_per_iteration and config.self_play != "continuous":
        raise ConfigError(
            "moves_per_iteration: only continuous self-play uses it (self_play continuous); "
            f"got {config.moves_per_iteration} with self_play {config.self_play}"
        )
    if config.eval_games % 2:
        raise ConfigError(
            f"eval_games: must be even (half with each seat), got {config.eval_games}"
        )
    return game


class AlphaZeroTrainer(NamedTuple):
    game: BoardGame
    network: PolicyValueNetwork
    init: Any  # key -> AlphaZeroState
    self_play: Any  # (params, key) -> GameRecord
    train_chunk: Any  # (state, n) -> (state, metrics dict of [n] arrays)
    evaluate: Any  # (params, key) -> dict of floats
    solved: Any  # SolvedGame or None


def make_alphazero(config: AlphaZeroConfig) -> AlphaZeroTrainer:
    """init / self_play / train_chunk / evaluate for `config` (see the module doc)."""
    game = check_config(config)
    network = PolicyValueNetwork(game.num_actions, config.channels, config.num_blocks)
    optimizer = optax.adam(config.learning_rate)
    root_fn, recurrent_fn = game_model(game, network.apply)
    b, t_max = config.num_actors, game.max_moves

    def fresh_games():
        return jax.vmap(lambda _: game.init())(jnp.arange(b))

    def search(params, key, states, simulations, noise, temperature, tree=None):
        return mcts.search(
            params,
            key,
            root_fn(params, states),
            recurrent_fn,
            simulations,
            ~states.legal_action_mask,
            pb_c_init=config.pb_c_init,
            pb_c_base=config.pb_c_base,
            dirichlet_fraction=config.dirichlet_fraction if noise else 0.0,
            dirichlet_alpha=config.dirichlet_alpha,
            temperature=temperature,
            tree=tree,
        )

    def blank_trees(params, states):
        """Trees with no node for the games `states`, or None without tree_reuse."""
        if not config.tree_reuse:
            return None
        return mcts.empty_tree(root_fn(params, states), 2 * config.num_simulations + 1)

    def self_play_search(params, key, states, t, tree):
        """A self-play move's search (noise; tau by the move number t [B] or scalar) and
        the tree the next move continues (None without tree_reuse)."""
        tau = jnp.where(t < config.temperature_moves, 1.0, 0.0)
        out = search(params, key, states, config.num_simulations, True, tau, tree)
        return out, (mcts.subtree(out.tree, out.action) if config.tree_reuse else None)

    def self_play(params, key) -> GameRecord:
        states = fresh_games()

        def move(carry, inputs):
            states, tree = carry
            t, k = inputs
            out, tree = self_play_search(params, k, states, t, tree)
            record = (
                jax.vmap(game.observe)(states),
                out.action_weights,
                states.current_player,
                ~states.terminated,
            )
            return (jax.vmap(game.step)(states, out.action), tree), record

        keys = jax.random.split(key, t_max)
        (final, _), (obs, policy, player, valid) = jax.lax.scan(
            move, (states, blank_trees(params, states)), (jnp.arange(t_max), keys)
        )
        return GameRecord(obs, policy, outcome_for(final.winner[None], player), valid)

    moves = config.moves_per_iteration or t_max

    def continuous_move(params, carry, k):
        """One move of every slot: search, record the position, step; the slots whose game
        ended write it into the replay and start a new one."""
        actors, replay = carry
        states, t = actors.states, actors.length
        out, tree = self_play_search(params, k, states, t, actors.tree)
        slots = jnp.arange(b)
        obs = actors.obs.at[t, slots].set(jax.vmap(game.observe)(states))
        policy = actors.policy.at[t, slots].set(out.action_weights)
        nxt = jax.vmap(game.step)(states, out.action)
        ended, length = nxt.terminated, t + 1
        steps = jnp.arange(t_max)[:, None]
        player = steps % 2  # player 0 moves first; self-play moves are legal, so they alternate
        record = GameRecord(
            obs, policy, outcome_for(nxt.winner[None], player), ended[None] & (steps < length)
        )
        states = jax.tree.map(
            lambda new, old: jnp.where(ended.reshape((b,) + (1,) * (old.ndim - 1)), new, old),
            fresh_games(),
            nxt,
        )
        if tree is not None:  # a new game starts from an empty tree
            tree = tree._replace(node_visits=jnp.where(ended[:, None], 0, tree.node_visits))
        actors = ActorGames(states, obs, policy, jnp.where(ended, 0, length), tree)
        return (actors, add_to_replay(replay, record)), (ended, length, nxt.winner)

    def continuous_play(state: AlphaZeroState):
        """moves_per_iteration moves of every slot (see AlphaZeroConfig.self_play)."""
        key, play_key = jax.random.split(state.key)
        (actors, replay), (ended, length, winner) = jax.lax.scan(
            partial(continuous_move, state.params),
            (state.actors, state.replay),
            jax.random.split(play_key, moves),
        )
        finished = ended.sum().astype(jnp.int32)
        per_game = 1.0 / jnp.maximum(finished, 1)  # 0 rather than NaN if no game ended
        metrics = dict(
            game_length=jnp.sum(jnp.where(ended, length, 0)) * per_game,
            first_player_wins=jnp.sum(ended & (winner == 0)) * per_game,
            draws=jnp.sum(ended & (winner < 0)) * per_game,
            games_finished=finished,
        )
        state = state._replace(replay=replay, actors=actors, key=key, games=state.games + finished)
        return state, metrics

    loss_grad = jax.value_and_grad(alphazero_loss, has_aux=True)

    @partial(jax.jit, donate_argnums=0)
    def update(state: AlphaZeroState):
        """One Adam step of eq. (1) on a minibatch drawn uniformly from the replay; none while
        the replay is empty (continuous self-play before its first game ends)."""
        key, sample_key = jax.random.split(state.key)
        replay = state.replay
        idx = jax.random.randint(sample_key, (config.batch_size,), 0, replay.size)
        (loss, (value_loss, policy_loss)), grads = loss_grad(
            state.params, network.apply, replay.obs[idx], replay.policy[idx],
            replay.outcome[idx], config.l2,
        )  # fmt: skip
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        stepped = (optax.apply_updates(state.params, updates), opt_state)
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(replay.size > 0, new, old),
            stepped,
            (state.params, state.opt_state),
        )
        state = state._replace(params=params, opt_state=opt_state, key=key)
        return state, dict(loss=loss, value_loss=value_loss, policy_loss=policy_loss)

    def lockstep_play(state: AlphaZeroState):
        """One self-play batch into the replay, with its statistics."""
        key, play_key = jax.random.split(state.key)
        record = self_play(state.params, play_key)
        first = record.valid[0]
        metrics = dict(
            game_length=jnp.mean(record.valid.sum(0).astype(jnp.float32)),
            first_player_wins=jnp.mean(first & (record.outcome[0] > 0)),
            draws=jnp.mean(record.outcome[0] == 0),
        )
        state = state._replace(
            replay=add_to_replay(state.replay, record), key=key, games=state.games + b
        )
        return state, metrics

    play = jax.jit(
        continuous_play if config.self_play == "continuous" else lockstep_play,
        donate_argnums=0,
    )

    def train_chunk(state, n: int):
        """n iterations (self-play, then updates_per_iteration steps): (state, metrics dict
        of [n] arrays). A Python loop over jitted pieces: XLA:CPU runs this network's
        convolutions several times slower inside a lax.scan body (measured on tic-tac-toe with
        the defaults: 2.9 s per iteration as one scanned chunk, 0.45 s this way)."""
        rows = []
        for _ in range(n):
            state, row = play(state)
            losses = []
            for _ in range(config.updates_per_iteration):
                state, loss = update(state)
                losses.append(loss)
            for name in ("loss", "value_loss", "policy_loss"):
                row[name] = jnp.mean(jnp.stack([x[name] for x in losses])) if losses else 0.0
            state = state._replace(iteration=state.iteration + 1)
            rows.append(row)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *rows)

    def init(key) -> AlphaZeroState:
        init_key, key = jax.random.split(key)
        obs = jax.vmap(game.observe)(jax.vmap(lambda _: game.init())(jnp.arange(1)))
        params = network.init(init_key, obs)
        cap = config.replay_capacity
        replay = Replay(
            jnp.zeros((cap,) + game.obs_shape, jnp.float32),
            jnp.zeros((cap, game.num_actions), jnp.float32),
            jnp.zeros((cap,), jnp.float32),
            jnp.int32(0),
            jnp.int32(0),
        )
        actors = None
        if config.self_play == "continuous":
            states = fresh_games()
            actors = ActorGames(
                states,
                jnp.zeros((t_max, b) + game.obs_shape, jnp.float32),
                jnp.zeros((t_max, b, game.num_actions), jnp.float32),
                jnp.zeros((b,), jnp.int32),
                blank_trees(params, states),
            )
        return AlphaZeroState(
            params, optimizer.init(params), replay, key, jnp.int32(0), jnp.int32(0), actors
        )

    solved = solve(game) if game.rows * game.cols <= MAX_SOLVE_CELLS else None
    evaluate = make_evaluation(config, game, network, search, solved)
    return AlphaZeroTrainer(game, network, init, jax.jit(self_play), train_chunk, evaluate, solved)


def reachable_positions(game: BoardGame, solved) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every reachable non-terminal position of a solved game: (obs [P, H, W, 2] from the
    mover's side, legal [P, A], optimal [P, A]) from the solver's tables."""
    index = np.flatnonzero(solved.optimal.any(-1))
    cells = game.rows * game.cols
    digits = (index[:, None] // 3 ** np.arange(cells)) % 3
    board = np.where(digits == 2, -1, digits).reshape(-1, game.rows, game.cols)
    mover = np.where(board.reshape(len(index), -1).sum(-1) == 0, 1, -1)  # player 0 if equal
    rel = board * mover[:, None, None]
    obs = np.stack([rel == 1, rel == -1], -1).astype(np.float32)
    if game.gravity:
        legal = board[:, 0, :] == 0
    else:
        legal = board.reshape(len(index), -1) == 0
    return obs, legal, solved.optimal[index]


def make_evaluation(config, game: BoardGame, network, search, solved):
    """evaluate(params, key) -> {random_win, random_draw, random_loss, and perfect_* and
    optimal_move_rate for a solved game, mcts_* with opponent_simulations > 0}: the module
    doc's evaluation, jitted."""
    g = config.eval_games
    seats = jnp.arange(g) % 2  # the agent's seat in each game
    optimal_table = None if solved is None else jnp.asarray(solved.optimal)
    flat_root, flat_recurrent = game_model(
        game, lambda p, obs: (jnp.zeros((obs.shape[0], game.num_actions)), jnp.zeros(obs.shape[0]))
    )

    def pure_mcts_action(key, states):
        return mcts.search(
            None,
            key,
            flat_root(None, states),
            flat_recurrent,
            config.opponent_simulations,
            ~states.legal_action_mask,
            pb_c_init=config.pb_c_init,
            pb_c_base=config.pb_c_base,
            dirichlet_fraction=0.25,  # varied games against a deterministic agent
            dirichlet_alpha=config.dirichlet_alpha,
        ).action

    def agent_action(params, key, states):
        if config.eval_simulations > 0:
            return search(params, key, states, config.eval_simulations, False, 0.0).action
        logits, _ = network.apply(params, jax.vmap(game.observe)(states))
        return jnp.argmax(jnp.where(states.legal_action_mask, logits, -jnp.inf), -1)

    def uniform_among(key, allowed):
        return jax.random.categorical(key, jnp.where(allowed, 0.0, -jnp.inf)).astype(jnp.int32)

    def play(params, key, opponent):
        """The g games against `opponent`, the agent in seat i % 2 of game i. Every move is
        legal, so at move t every live game's mover is player t % 2: the agent moves in the
        games of parity t % 2 and the opponent in the others, and each side is computed for
        its g / 2 games only (ended games ignore their action)."""
        states = jax.vmap(lambda _: game.init())(seats)

        def half(tree, parity):  # games i with i % 2 == parity: [g / 2, ...]
            return jax.tree.map(
                lambda x: jnp.take(x.reshape((g // 2, 2) + x.shape[1:]), parity, axis=1), tree
            )

        def move(states, inputs):
            t, k = inputs
            agent_key, opp_key = jax.random.split(k)
            mine = agent_action(params, agent_key, half(states, t % 2))
            other = half(states, 1 - t % 2)
            if opponent == "mcts":
                theirs = pure_mcts_action(opp_key, other)
            elif opponent == "perfect":
                theirs = uniform_among(opp_key, optimal_table[board_index_jax(other.board)])
            else:
                theirs = uniform_among(opp_key, other.legal_action_mask)
            agent_column = (jnp.arange(2) == t % 2)[None]
            action = jnp.where(agent_column, mine[:, None], theirs[:, None]).reshape(g)
            return jax.vmap(game.step)(states, action.astype(jnp.int32)), None

        steps = (jnp.arange(game.max_moves), jax.random.split(key, game.max_moves))
        final, _ = jax.lax.scan(move, states, steps)
        z = outcome_for(final.winner, seats)
        return jnp.mean(z > 0), jnp.mean(z == 0), jnp.mean(z < 0)

    opponents = ("random",) + (("perfect",) if solved is not None else ())
    opponents += ("mcts",) if config.opponent_simulations > 0 else ()
    games = {o: jax.jit(partial(play, opponent=o)) for o in opponents}
    if solved is not None:
        obs, legal, optimal = (jnp.asarray(x) for x in reachable_positions(game, solved))

    @jax.jit
    def optimal_rate(params):
        logits, _ = network.apply(params, obs)
        best = jnp.argmax(jnp.where(legal, logits, -jnp.inf), -1)
        return jnp.mean(jnp.take_along_axis(optimal, best[:, None], 1))

    def evaluate(params, key) -> dict:
        out = {}
        for i, o in enumerate(opponents):
            win, draw, loss = games[o](params, jax.random.fold_in(key, i))
            out.update({f"{o}_win": float(win), f"{o}_draw": float(draw), f"{o}_loss": float(loss)})
        if solved is not None:
            out["optimal_move_rate"] = float(optimal_rate(params))
        return out

    return evaluate


def evaluation_key(config: AlphaZeroConfig) -> jax.Array:
    """The key of a run's evaluations (folded with the chunk's index after each chunk)."""
    return jax.random.PRNGKey(config.seed + 1_000_003)


def final_evaluation_key(config: AlphaZeroConfig) -> jax.Array:
    """The key of a run's final evaluation (results.json)."""
    return jax.random.fold_in(evaluation_key(config), 1_000_000)


class AlphaZeroRun(ChunkRun):
    def describe(self) -> str:
        r = self.results
        text = (
            f"done in {r['train_seconds']:.0f} s: {r['iterations']} iterations, {r['games']} "
            f"self-play games; against a random player: win {r['random_win']:.2f}, draw "
            f"{r['random_draw']:.2f}, loss {r['random_loss']:.2f}"
        )
        if "perfect_loss" in r:
            text += (
                f"; against perfect play: draw {r['perfect_draw']:.2f}, loss "
                f"{r['perfect_loss']:.2f}; optimal moves {r['optimal_move_rate']:.3f}"
            )
        return text


def run_alphazero(
    config: AlphaZeroConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
) -> AlphaZeroRun:
    """Train AlphaZero in a run folder (see the module doc); evaluation after every chunk."""
    cfg = config or AlphaZeroConfig()
    default = default_run_dir("alphazero", cfg, label=cfg.game)
    config, run_dir, _ = prepare_run_dir(
        AlphaZeroConfig, config, run_dir, resume, default, check_config
    )
    trainer = make_alphazero(config)
    eval_key = evaluation_key(config)

    def after_chunk(state, chunk, m, dt, total_seconds):
        row = dict(chunk=chunk, iteration=int(state.iteration), games=int(state.games))
        row.update({k: float(np.mean(v)) for k, v in m.items()})
        row.update(trainer.evaluate(state.params, jax.random.fold_in(eval_key, chunk)))
        row.update(iterations_per_sec=len(m["loss"]) / dt, train_seconds=total_seconds)
        if progress:
            shown = ", ".join(
                f"{k} {row[k]:.3f}"
                for k in ("loss", "random_win", "perfect_loss", "optimal_move_rate")
                if k in row
            )
            print(
                f"alphazero: iteration {row['iteration']}/{config.iterations} {shown} "
                f"({row['iterations_per_sec']:.2f} iterations/s)",
                flush=True,
            )
        return [row]

    loop = drive_config_chunks(
        run_dir,
        config,
        trainer.init(jax.random.PRNGKey(config.seed)),
        trainer.train_chunk,
        after_chunk,
        resume is not None,
        max_chunks,
    )
    results = {}
    if not loop.interrupted:
        final = trainer.evaluate(loop.state.params, final_evaluation_key(config))
        results = write_results(
            run_dir, loop, int(loop.state.iteration), games=int(loop.state.games), **final
        )
    return AlphaZeroRun(run_dir, results, loop.rows, loop.interrupted, loop.state)


EVALUATION_FIELDS = ("eval_games", "eval_simulations", "opponent_simulations")


def evaluate_alphazero(run_dir: str, seed: int | None = None, **changes) -> dict:
    """A finished run's network evaluated again (the module doc's evaluation) with the
    evaluation fields changed (EVALUATION_FIELDS: e.g. eval_simulations=64 to play with
    search, opponent_simulations=64 to add pure MCTS). `seed` picks the games' randomness;
    None takes the run's own final evaluation key, so that without changes the result is
    the run's results.json's. Nothing in run_dir is written. Returns the evaluation dict."""
    config = finished_run_config(
        AlphaZeroConfig, run_dir, changes, EVALUATION_FIELDS, "evaluate_alphazero",
        "run_alphazero",
    )  # fmt: skip
    check_config(config)
    trainer = make_alphazero(config)
    state, _ = restore_run_state(run_dir, trainer.init(jax.random.PRNGKey(config.seed)))
    key = final_evaluation_key(config) if seed is None else jax.random.PRNGKey(seed)
    return trainer.evaluate(state.params, key)
