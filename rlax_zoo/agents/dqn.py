"""DQN and its extensions, reading top to bottom: config, state, acting, n-step, update, loop.

Papers:
  * Mnih et al. 2015 (DQN: replay, target network, epsilon-greedy),
  * van Hasselt, Guez, Silver 2016 (Double DQN target, eq. 4),
  * Wang et al. 2016 (dueling head, eqs. 8-9),
  * Schaul et al. 2016 (prioritized replay, Algorithm 1: P(i), importance weights, beta
    annealed to 1),
  * Sutton & Barto 2018, eq. 7.1 (n-step targets).

Layout: the agent's functions (`init`, `act`, `observe`, `update`) are written for ONE seed
and `jax.vmap`ped over a leading seed axis; envpool steps all `num_seeds * num_envs` envs as
one batch (its xla handle cannot be vmapped). `make_dqn(config)` returns a `Trainer` whose
`run_chunk` runs a chunk of iterations (each: `rollout_length` vector steps then
`updates_per_rollout` gradient updates) as one jitted `lax.scan`, or, for image observations,
as one jitted iteration per Python call (see `loop`); the driver in `rlax_zoo.runner` calls it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rlax_zoo import replay as replay_lib
from rlax_zoo import value_learning, xla_cpu
from rlax_zoo.agents.base import (
    VmappedTrainer,
    make_chunk_runner,
    make_vector_step,
    python_loop_for,
)
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.envs.envpool_env import EnvpoolOptions, VecEnv, check_env_id, make_env_for
from rlax_zoo.networks import QNetwork


@dataclasses.dataclass(frozen=True)
class DQNConfig(EnvpoolOptions):
    """Every DQN hyperparameter; each is a command-line flag of `rlax-zoo train dqn`."""

    seed: int = option(0, "Random seed (network init, exploration, replay, envs).", low=0)
    num_seeds: int = option(1, "Independent seeds trained at once (vmapped agent).", low=1)
    total_steps: int = option(100_000, "Environment steps per seed.", low=1)
    num_envs: int = option(8, "Parallel environments per seed.", low=1)
    buffer_size: int = option(10_000, "Replay capacity (transitions) per seed.", low=1)
    batch_size: int = option(128, "Minibatch size per update.", low=1)
    learning_rate: float = option(5e-4, "Adam learning rate.", low=0.0, low_open=True)
    adam_eps: float = option(1e-5, "Adam epsilon.", low=0.0, low_open=True)
    max_grad_norm: float = option(10.0, "Global gradient-norm clip (0 = no clipping).", low=0.0)
    discount: float = option(0.99, "Discount gamma.", low=0.0, high=1.0)
    n_step: int = option(3, "n of the n-step targets (1 = one-step DQN).", low=1, high=100)
    double_q: bool = option(True, "Double DQN target (van Hasselt et al. 2016, eq. 4).")
    dueling: bool = option(True, "Dueling head (Wang et al. 2016).")
    aggregator: str = option("mean", "Dueling aggregator.", choices=("mean", "max"))
    replay: str = option(
        "proportional", "Replay kind.", choices=("uniform", "proportional", "rank")
    )
    priority_exponent: float = option(0.6, "Priority exponent alpha.", low=0.0, high=1.0)
    importance_beta: float = option(
        0.4, "Initial importance-weight exponent beta, annealed linearly to 1.", low=0.0, high=1.0
    )
    priority_eps: float = option(
        1e-6, "Added to |TD error| for priorities.", low=0.0, low_open=True
    )
    importance_normalization: str = option(
        "batch",
        "Divide importance weights by their max over the sampled batch (as Dopamine and "
        "most implementations do) or over the whole buffer (its least likely item).",
        choices=("batch", "buffer"),
    )
    target_period: int = option(
        500, "Updates between hard target-network copies (when target_tau = 1).", low=1
    )
    target_tau: float = option(
        1.0,
        "Polyak factor per update (1 = hard copies every target_period).",
        low=0.0,
        high=1.0,
        low_open=True,
    )
    epsilon_start: float = option(1.0, "Initial exploration epsilon.", low=0.0, high=1.0)
    epsilon_end: float = option(0.01, "Final exploration epsilon.", low=0.0, high=1.0)
    exploration_fraction: float = option(
        0.2,
        "Fraction of total_steps over which epsilon decays linearly.",
        low=0.0,
        high=1.0,
        low_open=True,
    )
    learning_starts: int = option(1_000, "Environment steps before the first update.", low=0)
    rollout_length: int = option(1, "Vector-env steps per iteration.", low=1)
    updates_per_rollout: int = option(4, "Gradient updates per iteration.", low=1)
    hidden_sizes: tuple[int, ...] = option((128, 128), "MLP torso sizes (vector obs).", low=1)
    loss: str = option("huber", "TD loss.", choices=("huber", "mse"))
    iterations_per_chunk: int = option(
        250, "Iterations per jitted chunk (one progress/log row per chunk).", low=1
    )
    checkpoint_every: int = option(
        20, "Chunks between checkpoints (Ctrl-C always checkpoints).", low=1
    )
    time_budget_s: float = time_budget_option()
    loop: str = option(
        "auto",
        "How a chunk's iterations run: one lax.scan ('scan'), or Python calling one jitted "
        "iteration at a time ('python'; faster for CNNs on CPU). 'auto': python for image "
        "observations, scan otherwise.",
        choices=("auto", "scan", "python"),
    )

    def check(self) -> None:
        check_env_id(self.env_id)
        if self.batch_size > self.buffer_size:
            raise ConfigError(
                f"batch_size: must be <= buffer_size ({self.buffer_size}), got {self.batch_size}"
            )
        if self.num_envs > self.buffer_size:
            raise ConfigError(
                f"num_envs: must be <= buffer_size ({self.buffer_size}), got {self.num_envs}"
            )
        if self.epsilon_end > self.epsilon_start:
            raise ConfigError(
                f"epsilon_end: must be <= epsilon_start ({self.epsilon_start}), "
                f"got {self.epsilon_end}"
            )
        if self.learning_starts < self.batch_size:
            raise ConfigError(
                f"learning_starts: must be >= batch_size ({self.batch_size}) so the first "
                f"update samples a filled buffer, got {self.learning_starts}"
            )

    @property
    def steps_per_iteration(self) -> int:
        """Environment steps per seed in one iteration."""
        return self.rollout_length * self.num_envs


# ----------------------------------------------------------------------------- state


class NStepWindow(NamedTuple):
    """The last n transitions of each env, oldest first: leaves [n, K, ...]."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    end: jax.Array  # the episode ended (terminated or truncated) at this transition
    valid: jax.Array  # False for padding and for envpool's reset steps


class DQNState(NamedTuple):
    """Everything one seed's agent carries between steps (leading [S] axis when vmapped)."""

    params: Any
    target_params: Any
    opt_state: Any
    replay: Any
    window: NStepWindow
    obs: jax.Array  # [K, ...] current observation of each env
    prev_done: jax.Array  # [K] the previous step ended an episode (next step is a reset)
    episode_return: jax.Array  # [K]
    episode_length: jax.Array  # [K]
    key: jax.Array
    env_steps: jax.Array  # [] int32, environment steps taken by this seed
    num_updates: jax.Array  # [] int32


class StepOutput(NamedTuple):
    done: jax.Array  # [K] an episode ended at this step
    episode_return: jax.Array  # [K] its undiscounted return (meaningful where done)
    episode_length: jax.Array  # [K]


class UpdateOutput(NamedTuple):
    loss: jax.Array
    mean_abs_td: jax.Array
    mean_q: jax.Array


def _replay_item(obs_shape, obs_dtype) -> dict:
    return dict(
        obs=jnp.zeros(obs_shape, obs_dtype),
        action=jnp.zeros((), jnp.int32),
        reward=jnp.zeros((), jnp.float32),
        discount=jnp.zeros((), jnp.float32),
        next_obs=jnp.zeros(obs_shape, obs_dtype),
        valid=jnp.zeros((), jnp.bool_),
    )


def linear_schedule(start: float, end: float, duration: float, t) -> jax.Array:
    """start -> end linearly over `duration` steps, then constant."""
    frac = jnp.clip(t / jnp.maximum(duration, 1.0), 0.0, 1.0)
    return start + frac * (end - start)


def n_step_transition(window: NStepWindow, last_obs: jax.Array):
    """Fold a window of n transitions into one n-step transition per env (S&B eq. 7.1).

    R = sum_{i<=m} (prod_{j<i} d_j) r_i,  D = prod_{i<=m} d_i,  bootstrap obs = obs after m,
    where m is the first entry that ends its episode (or n-1). Termination makes D = 0
    (no bootstrap); truncation keeps D = gamma^(m+1) and bootstraps from the final obs.

    Args:
      window: leaves [n, K, ...], oldest first.
      last_obs: [K, ...] the observation after the newest entry.
    Returns:
      (obs [K,...], action [K], R [K], D [K], next_obs [K,...], valid [K]).
    """
    ended = window.end.astype(jnp.float32)
    # included[i]: no earlier entry ended the episode.
    included = jnp.cumprod(jnp.concatenate([jnp.ones_like(ended[:1]), 1.0 - ended[:-1]]), axis=0)
    disc_before = jnp.cumprod(
        jnp.concatenate([jnp.ones_like(window.discount[:1]), window.discount[:-1]]), axis=0
    )
    ret = jnp.sum(included * disc_before * window.reward, axis=0)
    disc = jnp.prod(jnp.where(included > 0, window.discount, 1.0), axis=0)
    last = (jnp.sum(included, axis=0) - 1).astype(jnp.int32)  # m, per env
    next_obs_all = jnp.concatenate([window.obs[1:], last_obs[None]], axis=0)  # [n, K, ...]
    next_obs = jnp.take_along_axis(
        next_obs_all, last.reshape((1, -1) + (1,) * (last_obs.ndim - 1)), axis=0
    )[0]
    return window.obs[0], window.action[0], ret, disc, next_obs, window.valid[0]


# ----------------------------------------------------------------------------- the agent


class DQNAgent(NamedTuple):
    """Pure functions for one seed; vmap them over seeds."""

    init: Any
    act: Any
    observe: Any
    update: Any
    network: QNetwork
    buffer: Any


def make_agent(config: DQNConfig, obs_shape, obs_dtype, num_actions: int) -> DQNAgent:
    """Build the single-seed agent functions for the given observation/action spaces."""
    torso = "nature_cnn" if len(obs_shape) == 3 else "mlp"
    network = QNetwork(
        num_actions=num_actions,
        torso=torso,
        hidden_sizes=config.hidden_sizes,
        dueling=config.dueling,
        aggregator=config.aggregator,
    )
    if config.replay == "uniform":
        buffer = replay_lib.uniform_replay(config.buffer_size, config.batch_size)
    else:
        buffer = replay_lib.prioritized_replay(
            config.buffer_size,
            config.batch_size,
            alpha=config.priority_exponent,
            kind=config.replay,
            eps=config.priority_eps,
            tree_impl=xla_cpu.replay_tree_impl(),
            normalise_weights=config.importance_normalization,
        )
    optimizer = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm)
        if config.max_grad_norm
        else optax.identity(),
        optax.adam(config.learning_rate, eps=config.adam_eps),
    )
    k, n = config.num_envs, config.n_step
    total_steps = float(config.total_steps)
    decay_steps = config.exploration_fraction * total_steps

    def init(key, first_obs) -> DQNState:
        """first_obs: [K, ...] from the env's reset."""
        key, init_key = jax.random.split(key)
        params = network.init(init_key, first_obs[:1])
        window = NStepWindow(
            obs=jnp.zeros((n, k) + tuple(obs_shape), obs_dtype),
            action=jnp.zeros((n, k), jnp.int32),
            reward=jnp.zeros((n, k), jnp.float32),
            discount=jnp.zeros((n, k), jnp.float32),
            end=jnp.zeros((n, k), jnp.bool_),
            valid=jnp.zeros((n, k), jnp.bool_),
        )
        return DQNState(
            params=params,
            target_params=params,
            opt_state=optimizer.init(params),
            replay=buffer.init(_replay_item(obs_shape, obs_dtype)),
            window=window,
            obs=jnp.asarray(first_obs, obs_dtype),
            prev_done=jnp.zeros((k,), jnp.bool_),
            episode_return=jnp.zeros((k,), jnp.float32),
            episode_length=jnp.zeros((k,), jnp.int32),
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
            num_updates=jnp.zeros((), jnp.int32),
        )

    def act(state: DQNState):
        """Epsilon-greedy actions [K] for the current observations; returns (state, actions)."""
        key, k_explore, k_random = jax.random.split(state.key, 3)
        epsilon = linear_schedule(
            config.epsilon_start, config.epsilon_end, decay_steps, state.env_steps
        )
        q = network.apply(state.params, state.obs)
        greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
        random_a = jax.random.randint(k_random, (k,), 0, num_actions, jnp.int32)
        explore = jax.random.uniform(k_explore, (k,)) < epsilon
        return state._replace(key=key), jnp.where(explore, random_a, greedy)

    def observe(state: DQNState, action, next_obs, reward, terminated, truncated, env_reward=None):
        """Record one vector step: n-step window, replay insertion, episode statistics."""
        valid = ~state.prev_done  # the step after an episode end is envpool's reset step
        done = (terminated | truncated) & valid
        discount = config.discount * (1.0 - terminated.astype(jnp.float32))
        entry = (state.obs, action, reward.astype(jnp.float32), discount, done, valid)
        window = NStepWindow(
            *(
                jnp.concatenate([w[1:], e[None]], axis=0)
                for w, e in zip(state.window, entry, strict=True)
            )
        )
        obs, a, ret, disc, nxt, item_valid = n_step_transition(window, next_obs)
        items = dict(obs=obs, action=a, reward=ret, discount=disc, next_obs=nxt, valid=item_valid)
        replay_state = buffer.add(state.replay, items)
        # logged returns are the environment's own, also under a reward-shaping wrapper
        logged = reward if env_reward is None else env_reward
        episode_return = state.episode_return + jnp.where(valid, logged, 0.0)
        episode_length = state.episode_length + valid.astype(jnp.int32)
        out = StepOutput(done=done, episode_return=episode_return, episode_length=episode_length)
        state = state._replace(
            replay=replay_state,
            window=window,
            obs=next_obs.astype(obs_dtype),
            prev_done=terminated | truncated,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            env_steps=state.env_steps + k,
        )
        return state, out

    def loss_fn(params, target_params, batch, weights):
        q_tm1 = network.apply(params, batch["obs"])
        q_t_target = network.apply(target_params, batch["next_obs"])
        if config.double_q:
            # the selector needs no gradient: a forward pass only (no backward over next_obs)
            q_t_online = network.apply(jax.lax.stop_gradient(params), batch["next_obs"])
            td = jax.vmap(value_learning.double_q_learning)(
                q_tm1,
                batch["action"],
                batch["reward"],
                batch["discount"],
                q_t_target,
                q_t_online,
            )
        else:
            td = jax.vmap(value_learning.q_learning)(
                q_tm1, batch["action"], batch["reward"], batch["discount"], q_t_target
            )
        td = jnp.where(batch["valid"], td, 0.0)
        per_item = value_learning.huber_loss(td) if config.loss == "huber" else 0.5 * td**2
        loss = jnp.mean(weights * per_item)
        return loss, (td, jnp.mean(q_tm1))

    def update(state: DQNState):
        """One gradient step on a replay minibatch (Schaul et al. 2016, Alg. 1 lines 9-14)."""
        key, sample_key = jax.random.split(state.key)
        beta = linear_schedule(config.importance_beta, 1.0, total_steps, state.env_steps)
        sample = buffer.sample(state.replay, sample_key, beta)
        (loss, (td, mean_q)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, sample.items, sample.weights
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        replay_state = buffer.set_priorities(state.replay, sample.indices, jnp.abs(td))
        num_updates = state.num_updates + 1
        if config.target_tau < 1.0:
            target = optax.incremental_update(params, state.target_params, config.target_tau)
        else:
            copy = num_updates % config.target_period == 0
            target = jax.tree.map(lambda p, t: jnp.where(copy, p, t), params, state.target_params)
        state = state._replace(
            params=params,
            target_params=target,
            opt_state=opt_state,
            replay=replay_state,
            key=key,
            num_updates=num_updates,
        )
        return state, UpdateOutput(loss, jnp.mean(jnp.abs(td)), mean_q)

    return DQNAgent(init, act, observe, update, network, buffer)


# ----------------------------------------------------------------------------- the loop


class ChunkOutput(NamedTuple):
    steps: StepOutput  # leaves [I, rollout_length, S, K]
    updates: UpdateOutput  # leaves [I, updates_per_rollout, S] (zeros while collecting)
    actions: jax.Array  # [I * rollout_length, S * K] int32: the env's action log


def make_dqn(config: DQNConfig, vec_env: VecEnv | None = None) -> VmappedTrainer:
    """Build env, agent and the jitted chunk function for `config` (validated first)."""
    from rlax_zoo.config import validate

    validate(config)
    s, k = config.num_seeds, config.num_envs
    if vec_env is None:
        vec_env = make_env_for(config, s * k, config.seed)
    agent = make_agent(config, vec_env.obs_shape, vec_env.obs_dtype, vec_env.num_actions)
    vector_step = make_vector_step(agent, vec_env, s, k)
    python_loop = python_loop_for(config.loop, vec_env.obs_shape)
    unroll = True if python_loop else 1  # inner loops unroll when Python drives iterations

    def iteration(handle, state, learn: bool):
        (handle, state), ((steps,), actions) = jax.lax.scan(
            vector_step, (handle, state), None, config.rollout_length, unroll=unroll
        )
        if learn:

            def one_update(st, _):
                return jax.vmap(agent.update)(st)

            state, upd = jax.lax.scan(
                one_update, state, None, config.updates_per_rollout, unroll=unroll
            )
        else:
            zeros = jnp.zeros((config.updates_per_rollout, s), jnp.float32)
            upd = UpdateOutput(zeros, zeros, zeros)
        return handle, state, (steps, upd, actions)

    chunk_runner = make_chunk_runner(iteration, python_loop)

    def run_chunk(handle, state, learn: bool, num_iterations: int):
        handle, state, (steps, upd, actions) = chunk_runner(handle, state, learn, num_iterations)
        return handle, state, ChunkOutput(steps, upd, actions.reshape((-1, s * k)))

    return VmappedTrainer(config=config, vec_env=vec_env, agent=agent, run_chunk=run_chunk)
