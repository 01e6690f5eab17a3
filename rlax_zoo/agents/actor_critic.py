"""Synchronous actor-critic (A2C) and REINFORCE with a learned baseline, one file.

Papers:
  * Williams 1992 (REINFORCE), with a learned state-value baseline (Sutton & Barto 2018,
    Section 13.4, eq. 13.11),
  * Sutton, McAllester, Singh, Mansour 2000 (policy-gradient theorem with function
    approximation, Theorem 1),
  * Mnih et al. 2016, Algorithm S3 (advantage actor-critic: t_max-step rollouts, returns
    bootstrapped from V, policy + value + entropy loss), run synchronously over vmapped envs
    (A2C) instead of with asynchronous threads (A3C: `rlax_zoo.agents.async_methods`).

Both methods share one loop. Each iteration steps `num_envs` envpool envs per seed for
`rollout_length` steps with the current policy, then takes ONE gradient step on

  L = -mean_t[log pi(a_t|s_t) stop_grad(G_t - V(s_t))] + value_cost mean_t[0.5 (G_t - V(s_t))^2]
      - entropy_cost mean_t[H(pi(.|s_t))]

where G_t = r_{t+1} + gamma G_{t+1} runs to the end of the episode or of the rollout,
whichever is first ("as many steps as are left", Algorithm S3). At the end of the rollout,
and where the time limit TRUNCATED an episode, G bootstraps from V of the last observation;
where the episode TERMINATED, G does not bootstrap. REINFORCE is the same loss with long
rollouts (default 200 steps per env) and Adam: G_t is then the Monte-Carlo return wherever the
episode ends inside the rollout (the usual vectorised REINFORCE, e.g. Spinning Up's VPG; an
episode cut by the end of the rollout bootstraps from the baseline instead of being thrown
away, a departure from Williams' pure Monte-Carlo estimator that loses no data. Measured on
CartPole-v1, 4 envs, 400k steps, 3 seeds: rollouts of 200 steps reached a 20-episode mean of
475 in 3 of 3 seeds and ended at 490-500; rollouts of 500 steps, the time limit, reached it in
2 of 3 and ended at 221-464). envpool's reset step (the step after an episode end, whose
action is ignored) is masked out of the loss.

`make_a2c(config)` returns a Trainer for `rlax_zoo.runner` (chunks, logs, checkpoints, exact
resume). `rlax-zoo train a2c`, `rlax-zoo train reinforce`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rlax_zoo import multistep, policy_gradient
from rlax_zoo.agents.base import (
    VmappedTrainer,
    make_chunk_runner,
    make_vector_step,
    python_loop_for,
)
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.envs.envpool_env import EnvpoolOptions, VecEnv, check_env_id, make_env_for
from rlax_zoo.networks import ActorCriticNetwork


@dataclasses.dataclass(frozen=True)
class A2CConfig(EnvpoolOptions):
    """Every A2C hyperparameter; each is a flag of `rlax-zoo train a2c`."""

    seed: int = option(0, "Random seed (network init, action sampling, envs).", low=0)
    num_seeds: int = option(1, "Independent seeds trained at once (vmapped agent).", low=1)
    total_steps: int = option(1_000_000, "Environment steps per seed.", low=1)
    num_envs: int = option(16, "Parallel environments per seed.", low=1)
    rollout_length: int = option(
        5, "Steps per env between updates (t_max of Mnih et al. 2016).", low=1
    )
    learning_rate: float = option(1e-3, "Learning rate.", low=0.0, low_open=True)
    optimizer: str = option("rmsprop", "Optimizer.", choices=("adam", "rmsprop"))
    optimizer_eps: float = option(1e-5, "Adam / RMSProp epsilon.", low=0.0, low_open=True)
    rmsprop_decay: float = option(0.99, "RMSProp decay.", low=0.0, high=1.0, high_open=True)
    anneal_learning_rate: bool = option(
        True, "Decay the learning rate linearly to 0 over total_steps (as A3C does)."
    )
    max_grad_norm: float = option(0.5, "Global gradient-norm clip (0 = no clipping).", low=0.0)
    clip_per_network: bool = option(
        False,
        "Clip the policy network's and the value network's gradients each to max_grad_norm "
        "(needs two networks: shared_torso=False), so a large value gradient cannot shrink "
        "the policy's step.",
    )
    discount: float = option(0.99, "Discount gamma.", low=0.0, high=1.0)
    entropy_cost: float = option(0.0, "Weight of the entropy bonus.", low=0.0)
    value_cost: float = option(0.5, "Weight of the value (baseline) loss.", low=0.0)
    normalize_advantages: bool = option(
        True, "Standardise the advantages of each batch (zero mean, unit variance)."
    )
    hidden_sizes: tuple[int, ...] = option((64, 64), "MLP torso sizes (vector obs).", low=1)
    shared_torso: bool = option(
        False, "One torso for policy and value (A3C's Atari net); default: two networks."
    )
    iterations_per_chunk: int = option(
        500, "Iterations per jitted chunk (one progress/log row per chunk).", low=1
    )
    checkpoint_every: int = option(
        20, "Chunks between checkpoints (Ctrl-C always checkpoints).", low=1
    )
    time_budget_s: float = time_budget_option()
    loop: str = option(
        "auto",
        "How a chunk's iterations run: one lax.scan ('scan') or one jitted iteration per "
        "Python call ('python'; faster for CNNs on CPU). 'auto': python for images.",
        choices=("auto", "scan", "python"),
    )

    def check(self) -> None:
        check_env_id(self.env_id)
        if self.clip_per_network and self.shared_torso:
            raise ConfigError(
                "clip_per_network needs separate policy and value networks "
                "(shared_torso=False): a shared torso's gradient mixes both losses"
            )

    @property
    def steps_per_iteration(self) -> int:
        """Environment steps per seed in one iteration."""
        return self.rollout_length * self.num_envs


@dataclasses.dataclass(frozen=True)
class ReinforceConfig(A2CConfig):
    """REINFORCE with a learned baseline: Monte-Carlo returns over long rollouts."""

    num_envs: int = option(4, "Parallel environments per seed.", low=1)
    rollout_length: int = option(
        200,
        "Steps per env between updates; returns are Monte-Carlo wherever the episode ends "
        "inside the rollout, and bootstrap from the baseline where the rollout cuts it.",
        low=1,
    )
    learning_rate: float = option(3e-3, "Learning rate.", low=0.0, low_open=True)
    optimizer: str = option("adam", "Optimizer.", choices=("adam", "rmsprop"))
    anneal_learning_rate: bool = option(False, "Decay the learning rate linearly to 0.")
    normalize_advantages: bool = option(False, "Standardise the advantages of each batch.")
    entropy_cost: float = option(0.0, "Weight of the entropy bonus.", low=0.0)
    value_cost: float = option(1.0, "Weight of the baseline's squared error.", low=0.0)
    shared_torso: bool = option(False, "One torso for policy and baseline; default: two networks.")
    iterations_per_chunk: int = option(
        5, "Iterations per jitted chunk (one progress/log row per chunk).", low=1
    )
    total_steps: int = option(400_000, "Environment steps per seed.", low=1)


# ----------------------------------------------------------------------------- state


class ActorCriticState(NamedTuple):
    """One seed's agent state (a leading [S] axis when vmapped over seeds)."""

    params: Any
    opt_state: Any
    obs: jax.Array  # [K, ...] current observation of each env
    prev_done: jax.Array  # [K] the previous step ended an episode (this step is a reset)
    episode_return: jax.Array  # [K]
    episode_length: jax.Array  # [K]
    key: jax.Array
    env_steps: jax.Array  # [] int32


class Transition(NamedTuple):
    """One vector step of a rollout (leaves [K, ...]; [T, K, ...] stacked)."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    valid: jax.Array  # False on envpool's reset steps


class StepOutput(NamedTuple):
    done: jax.Array  # [K] an episode ended at this step
    episode_return: jax.Array  # [K]
    episode_length: jax.Array  # [K]


class UpdateOutput(NamedTuple):
    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array


def rollout_returns(
    reward: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    next_value: jax.Array,
    discount: float,
) -> jax.Array:
    """Returns of a rollout, bootstrapped at its end and at truncations (Algorithm S3, line 12).

    G_t = r_t + gamma (1 - term_t) [trunc_t ? V(s_{t+1}) : G_{t+1}], G_{T-1} bootstraps from
    V(s_T). This is `multistep.lambda_returns` with lambda_t = 1 - trunc_t.

    Args:
      reward, terminated, truncated: [T] for one env (time-major).
      next_value: [T] V(s_{t+1}), the value of the observation after each step (on a
        truncation step, the final observation of the episode).
      discount: gamma.
    Returns:
      [T] returns.
    """
    discount_t = discount * (1.0 - terminated.astype(jnp.float32))
    lambda_t = 1.0 - truncated.astype(jnp.float32)
    return multistep.lambda_returns(reward, discount_t, next_value, lambda_t)


def actor_critic_loss(network, params, rollout: Transition, last_obs, config):
    """The advantage actor-critic loss of a rollout (Mnih et al. 2016, Algorithm S3).

    L = -mean[log pi(a_t|s_t) sg(A_t)] + value_cost mean[0.5 A_t^2] - entropy_cost mean[H_t],
    A_t = G_t - V(s_t) with G_t from `rollout_returns`; means over valid (non-reset) steps.

    Args:
      network: an `ActorCriticNetwork`; params its parameters.
      rollout: a `Transition` with leaves [T, K, ...].
      last_obs: [K, ...] the observation after the rollout's last step.
      config: anything with discount, entropy_cost, value_cost, normalize_advantages.
    Returns:
      (loss [], UpdateOutput).
    """
    t, k = rollout.action.shape
    all_obs = jnp.concatenate([rollout.obs, last_obs[None]], axis=0)  # [T+1, K, ...]
    logits, values = network.apply(params, all_obs.reshape((-1,) + all_obs.shape[2:]))
    logits = logits.reshape((t + 1, k, -1))[:-1]
    values = values.reshape((t + 1, k))
    returns = jax.vmap(rollout_returns, in_axes=(1, 1, 1, 1, None), out_axes=1)(
        rollout.reward,
        rollout.terminated,
        rollout.truncated,
        jax.lax.stop_gradient(values[1:]),
        config.discount,
    )
    advantages = returns - values[:-1]
    mask = rollout.valid.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    pg_adv = jax.lax.stop_gradient(advantages)
    if config.normalize_advantages:
        centred = pg_adv - jnp.sum(mask * pg_adv) / count
        pg_adv = centred / (jnp.sqrt(jnp.sum(mask * centred**2) / count) + 1e-8)
    # the primitives average over time: these weights make it a mean over valid steps
    flat = lambda x: x.reshape((t * k,) + x.shape[2:])  # noqa: E731
    w = flat(mask) * (t * k) / count
    policy_loss = policy_gradient.policy_gradient_loss(
        flat(logits), flat(rollout.action), flat(pg_adv), w
    )
    entropy = -policy_gradient.entropy_loss(flat(logits), w)
    value_loss = jnp.mean(w * 0.5 * flat(advantages) ** 2)
    loss = policy_loss + config.value_cost * value_loss - config.entropy_cost * entropy
    return loss, UpdateOutput(loss, policy_loss, value_loss, entropy)


def make_optimizer(config, num_updates: int) -> optax.GradientTransformation:
    """Gradient clipping then Adam or RMSProp (eps inside the square root, as in Mnih et al.
    2016, Sec. 4's shared RMSProp), learning rate optionally annealed linearly to 0."""
    lr = (
        optax.linear_schedule(config.learning_rate, 0.0, max(1, num_updates))
        if config.anneal_learning_rate
        else config.learning_rate
    )
    if config.optimizer == "adam":
        opt = optax.adam(lr, eps=config.optimizer_eps)
    else:
        opt = optax.rmsprop(lr, decay=config.rmsprop_decay, eps=config.optimizer_eps)
    clip = config.max_grad_norm
    if not clip:
        return opt
    if getattr(config, "clip_per_network", False):
        return optax.chain(clip_per_network(clip), opt)
    return optax.chain(optax.clip_by_global_norm(clip), opt)


def network_of(path) -> str:
    """'value' for the parameters of an `ActorCriticNetwork`'s value torso and head (top-level
    module names starting with 'value'), 'policy' for the rest."""
    keys = [k.key for k in path]  # flax parameters are nested dicts: DictKey paths
    module = keys[1] if keys[0] == "params" else keys[0]
    return "value" if module.startswith("value") else "policy"


def clip_per_network(max_norm: float) -> optax.GradientTransformation:
    """`optax.clip_by_global_norm(max_norm)` applied to the policy's and to the value's
    gradients separately (params of an `ActorCriticNetwork` with two networks; see
    `network_of`). Each part is scaled by min(1, max_norm / ||g_part||)."""
    clip = optax.clip_by_global_norm(max_norm)
    return optax.multi_transform(
        {"policy": clip, "value": clip},
        lambda params: jax.tree_util.tree_map_with_path(lambda p, _: network_of(p), params),
    )


class ActorCriticAgent(NamedTuple):
    init: Any
    act: Any
    observe: Any
    update: Any
    network: ActorCriticNetwork


def make_agent(config: A2CConfig, obs_shape, obs_dtype, num_actions: int) -> ActorCriticAgent:
    """The single-seed agent functions (vmap them over seeds)."""
    network = ActorCriticNetwork(
        num_actions=num_actions,
        torso="nature_cnn" if len(obs_shape) == 3 else "mlp",
        hidden_sizes=config.hidden_sizes,
        shared_torso=config.shared_torso,
    )
    optimizer = make_optimizer(config, config.total_steps // config.steps_per_iteration)
    k = config.num_envs

    def init(key, first_obs) -> ActorCriticState:
        key, init_key = jax.random.split(key)
        params = network.init(init_key, first_obs[:1])
        return ActorCriticState(
            params=params,
            opt_state=optimizer.init(params),
            obs=jnp.asarray(first_obs, obs_dtype),
            prev_done=jnp.zeros((k,), jnp.bool_),
            episode_return=jnp.zeros((k,), jnp.float32),
            episode_length=jnp.zeros((k,), jnp.int32),
            key=key,
            env_steps=jnp.zeros((), jnp.int32),
        )

    def act(state: ActorCriticState):
        """Sample a_t ~ pi(.|s_t) for every env: (state, actions [K] int32)."""
        key, sample_key = jax.random.split(state.key)
        logits, _ = network.apply(state.params, state.obs)
        actions = policy_gradient.categorical_policy(logits).sample(seed=sample_key)
        return state._replace(key=key), actions.astype(jnp.int32)

    def observe(
        state: ActorCriticState, action, next_obs, reward, terminated, truncated, env_reward=None
    ):
        valid = ~state.prev_done  # the step after an episode end is envpool's reset step
        done = (terminated | truncated) & valid
        transition = Transition(
            state.obs, action, reward.astype(jnp.float32), terminated, truncated, valid
        )
        # logged returns are the environment's own, also under a reward-shaping wrapper
        logged = reward if env_reward is None else env_reward
        episode_return = state.episode_return + jnp.where(valid, logged, 0.0)
        episode_length = state.episode_length + valid.astype(jnp.int32)
        out = StepOutput(done, episode_return, episode_length)
        state = state._replace(
            obs=next_obs.astype(obs_dtype),
            prev_done=terminated | truncated,
            episode_return=jnp.where(done, 0.0, episode_return),
            episode_length=jnp.where(done, 0, episode_length),
            env_steps=state.env_steps + k,
        )
        return state, transition, out

    def loss_fn(params, rollout: Transition, last_obs):
        return actor_critic_loss(network, params, rollout, last_obs, config)

    def update(state: ActorCriticState, rollout: Transition):
        """One gradient step on the rollout [T, K] just collected (on-policy)."""
        grads, out = jax.grad(loss_fn, has_aux=True)(state.params, rollout, state.obs)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return state._replace(params=params, opt_state=opt_state), out

    return ActorCriticAgent(init, act, observe, update, network)


# ----------------------------------------------------------------------------- the loop


class ChunkOutput(NamedTuple):
    steps: StepOutput  # leaves [I, T, S, K]
    updates: Any  # the agent's update outputs (UpdateOutput here), leaves [I, S]
    actions: jax.Array  # [I * T, S * K] int32: the env's action log


def make_a2c(config: A2CConfig, vec_env: VecEnv | None = None) -> VmappedTrainer:
    """Build the envs, the agent and the jitted chunk function (config validated first)."""
    from rlax_zoo.config import validate

    validate(config)
    if vec_env is None:
        vec_env = make_env_for(config, config.num_seeds * config.num_envs, config.seed)
    agent = make_agent(config, vec_env.obs_shape, vec_env.obs_dtype, vec_env.num_actions)
    return make_rollout_trainer(config, vec_env, agent)


def make_rollout_trainer(config, vec_env: VecEnv, agent) -> VmappedTrainer:
    """The loop of any agent that collects `rollout_length` vector steps, then updates once.

    `agent` has `act`, `observe` (returning the rollout's per-step record and a `StepOutput`)
    and `update(state, rollout [T, K, ...]) -> (state, outputs)`, all single-seed (vmapped
    here over `num_seeds`). Used by A2C / REINFORCE and by IMPALA's jitted architecture.
    """
    s, k = config.num_seeds, config.num_envs
    python_loop = python_loop_for(config.loop, vec_env.obs_shape)

    vector_step = make_vector_step(agent, vec_env, s, k)

    def iteration(handle, state, learn: bool):
        del learn  # every iteration learns (on-policy)
        (handle, state), ((rollout, steps), actions) = jax.lax.scan(
            vector_step,
            (handle, state),
            None,
            config.rollout_length,
            unroll=True if python_loop else 1,
        )
        # rollout leaves are [T, S, K, ...]: the agent (vmapped over S) takes [T, K, ...]
        state, upd = jax.vmap(agent.update, in_axes=(0, 1))(state, rollout)
        return handle, state, (steps, upd, actions)

    chunk_runner = make_chunk_runner(iteration, python_loop)

    def run_chunk(handle, state, learn: bool, num_iterations: int):
        handle, state, (steps, upd, actions) = chunk_runner(handle, state, learn, num_iterations)
        return handle, state, ChunkOutput(steps, upd, actions.reshape((-1, s * k)))

    return VmappedTrainer(config=config, vec_env=vec_env, agent=agent, run_chunk=run_chunk)
