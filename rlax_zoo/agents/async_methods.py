"""Asynchronous methods on CPU threads (Mnih et al. 2016): one-step Q, one-step Sarsa,
n-step Q and A3C.

The paper's framework, as it describes it: `threads` actor-learner threads, each with its own
envpool environment and its own exploration, compute gradients with jitted functions from a
snapshot of the shared parameters and apply them asynchronously to the shared parameters with
shared RMSProp statistics (Section 4, "Optimization"). A global step counter T is shared by
all threads.

  * async one-step Q-learning: Algorithm 1. Each thread acts epsilon-greedily on Q(s; theta),
    accumulates the gradients of (r + gamma max_a' Q(s', a'; theta^-) - Q(s, a; theta))^2 over
    `t_max` (I_AsyncUpdate) steps, then applies them; the target network theta^- is
    refreshed every `target_period` (I_target) global steps.
  * async one-step Sarsa: the same with the target r + gamma Q(s', a'; theta^-), a' the action
    the thread takes next in s'.
  * async n-step Q-learning: Algorithm S2. t_max-step segments, R = max_a Q(s_t, a; theta^-)
    (0 at termination), R <- r_i + gamma R backwards.
  * A3C: Algorithm S3. t_max-step segments with a policy pi(a|s; theta) and a value V(s;
    theta_v), bootstrapping from V on non-terminal states, policy + value gradients and an
    entropy bonus (the loss of `rlax_zoo.agents.actor_critic`, A2C's synchronous twin).

Each value-based thread anneals its epsilon from 1 to a final epsilon sampled from
{0.1, 0.01, 0.5} with probabilities {0.4, 0.3, 0.3} over `exploration_steps` global steps
(Section 8 of the supplement). Truncation (a time limit) bootstraps from the value of the
final observation; termination does not. envpool's auto-reset step (the step after an episode
end, whose action is ignored) is masked out of every loss.

How this maps onto JAX: a thread's whole segment (t_max env steps through its env's
`env.xla()` step, then the loss gradient) is ONE jitted call, during which JAX releases the
GIL, so threads overlap on the cores. Each call takes and returns a handful of arrays: the
shared parameters and optimizer statistics travel as one packed vector (`rlax_zoo.packing`),
like the paper's shared parameter vector theta; so do a thread's env handle and acting state;
its losses and finished episodes go to a log vector that stays on the device until the chunk
ends. Every array a call takes or returns costs several microseconds of Python-side work on
this machine, enough to stop two threads from overlapping (benchmarks/RESULTS.md).
Applying a gradient to the shared parameters and RMSProp statistics (one small jitted call)
and advancing T happen under a lock: Python cannot write parameters in place the way
Hogwild! does, and a lock-free read-modify-write of the parameter vector would silently drop
other threads' updates. A thread acts for t_max steps on the parameter snapshot it read at
the start of the segment (in Algorithm 1 the parameters may change under a thread between
two of its steps; here they change between its segments). The paper sums gradients over the
segment; the losses here average over its valid steps (with RMSProp a constant factor only
rescales the effective step size).

Non-determinism: thread interleaving decides which parameters each segment reads, so two runs
with the same seed differ (as in the paper). Everything else is seeded: the run folder's
config.json (seed, threads, every hyperparameter) repeats a run in distribution, and the
per-thread final epsilons are a function of (seed, threads): `thread_final_epsilons`.
Checkpoints hold the shared parameters, optimizer statistics, target network and counters;
`--resume` continues from them with fresh environments (the episodes in flight are lost).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo import multistep, packing, value_learning
from rlax_zoo.agents import actor_critic
from rlax_zoo.agents.base import ChunkSummary, chunk_schedule
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.envs.envpool_env import EnvpoolOptions, check_env_id, make_env_for
from rlax_zoo.envs.jax_cartpole import make_jax_cartpole
from rlax_zoo.networks import ActorCriticNetwork, QNetwork

METHODS = ("q", "sarsa", "nstep_q", "a3c")
FINAL_EPSILONS = (0.1, 0.01, 0.5)
FINAL_EPSILON_PROBS = (0.4, 0.3, 0.3)


@dataclasses.dataclass(frozen=True)
class AsyncConfig(EnvpoolOptions):
    """Every hyperparameter of the asynchronous methods; each is a command-line flag."""

    method: str = option("a3c", "Which asynchronous method.", choices=METHODS)
    env_backend: str = option(
        "envpool",
        "Each thread's environments: envpool's (stepped by envpool's worker thread), or jax, "
        "CartPole-v1 written in JAX (rlax_zoo.envs.jax_cartpole) and stepped inside the "
        "thread's own jitted call, which lets 2 threads scale on 2 cores (CartPole-v1 only).",
        choices=("envpool", "jax"),
    )
    seed: int = option(0, "Random seed (networks, exploration, envs).", low=0)
    threads: int = option(2, "Actor-learner threads.", low=1, high=256)
    envs_per_thread: int = option(
        16,
        "envpool environments stepped by each thread (the paper: 1; more envs per jitted "
        "call amortise envpool's per-call latency, about 0.15 ms here).",
        low=1,
    )
    total_steps: int = option(1_000_000, "Global environment steps (all threads).", low=1)
    t_max: int = option(
        5, "Steps per segment: t_max (n-step Q, A3C) or I_AsyncUpdate (one-step).", low=1
    )
    learning_rate: float = option(1e-3, "Shared RMSProp learning rate.", low=0.0, low_open=True)
    anneal_learning_rate: bool = option(True, "Decay the learning rate linearly to 0.")
    optimizer: str = option("rmsprop", "Shared optimizer.", choices=("rmsprop", "adam"))
    rmsprop_decay: float = option(0.99, "RMSProp decay alpha.", low=0.0, high=1.0, high_open=True)
    optimizer_eps: float = option(
        1e-5, "RMSProp epsilon (inside the square root).", low=0.0, low_open=True
    )
    max_grad_norm: float = option(0.5, "Global gradient-norm clip per segment (0 = none).", low=0.0)
    discount: float = option(0.99, "Discount gamma.", low=0.0, high=1.0)
    target_period: int = option(
        2_000, "Global steps between target-network refreshes (I_target; Q methods).", low=1
    )
    exploration_steps: int = option(
        100_000,
        "Global steps over which each thread's epsilon anneals from 1 to its final value.",
        low=1,
    )
    entropy_cost: float = option(0.0, "A3C: weight of the entropy bonus.", low=0.0)
    value_cost: float = option(0.5, "A3C: weight of the value loss.", low=0.0)
    hidden_sizes: tuple[int, ...] = option((64, 64), "MLP torso sizes (vector obs).", low=1)
    shared_torso: bool = option(False, "A3C: one torso for policy and value.")
    normalize_advantages: bool = option(
        True, "A3C: standardise the advantages of each segment (zero mean, unit variance)."
    )
    segments_per_chunk: int = option(
        2_000, "Segments (updates, all threads) per logged chunk.", low=1
    )
    eval_envs: int = option(
        8,
        "After each chunk, one evaluation episode in each of this many envs with the shared "
        "parameters (greedy for the Q methods, pi for A3C); 0 disables.",
        low=0,
    )
    eval_max_steps: int = option(
        500, "Longest evaluation episode (CartPole-v1's time limit is 500).", low=1
    )
    checkpoint_every: int = option(
        10, "Chunks between checkpoints (Ctrl-C always checkpoints).", low=1
    )
    time_budget_s: float = time_budget_option()

    def check(self) -> None:
        check_env_id(self.env_id)
        if self.env_backend == "jax" and self.env_id != "CartPole-v1":
            raise ConfigError(
                f"env_backend: 'jax' has only CartPole-v1, got env_id {self.env_id!r} "
                "(use env_backend 'envpool')"
            )

    @property
    def steps_per_iteration(self) -> int:
        """Global environment steps per segment (one update)."""
        return self.t_max * self.envs_per_thread


def _method_config(name: str, method: str, doc: str, **defaults):
    """A config class whose `method` default is fixed (one per CLI subcommand)."""
    fields = [("method", str, option(method, "Which asynchronous method.", choices=METHODS))]
    for key, value in defaults.items():
        base = AsyncConfig.__dataclass_fields__[key]
        fields.append((key, base.type, dataclasses.field(default=value, metadata=base.metadata)))
    cls = dataclasses.make_dataclass(name, fields, bases=(AsyncConfig,), frozen=True)
    cls.__doc__ = doc
    cls.__module__ = __name__
    return cls


_Q_DEFAULTS = dict(max_grad_norm=1.0, learning_rate=7e-4, envs_per_thread=8)
AsyncQConfig = _method_config(
    "AsyncQConfig", "q", "Asynchronous one-step Q-learning.", **_Q_DEFAULTS
)
AsyncSarsaConfig = _method_config(
    "AsyncSarsaConfig", "sarsa", "Asynchronous one-step Sarsa.", **_Q_DEFAULTS
)
AsyncNStepQConfig = _method_config(
    "AsyncNStepQConfig", "nstep_q", "Asynchronous n-step Q-learning.", **_Q_DEFAULTS
)
A3CConfig = _method_config(
    "A3CConfig",
    "a3c",
    "Asynchronous advantage actor-critic (A3C).",
)


def thread_final_epsilons(seed: int, threads: int) -> np.ndarray:
    """Each thread's final epsilon, drawn from {0.1, 0.01, 0.5} w.p. {0.4, 0.3, 0.3}."""
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(FINAL_EPSILONS), size=threads, p=np.array(FINAL_EPSILON_PROBS))


# ----------------------------------------------------------------------------- state


class SharedState(NamedTuple):
    """What all threads share (and what a checkpoint holds)."""

    params: Any
    target_params: Any
    opt_state: Any
    env_steps: jax.Array  # [] int32: the global step counter T
    num_updates: jax.Array  # [] int32


class LocalState(NamedTuple):
    """One thread's own acting state (leaves [E, ...])."""

    obs: jax.Array
    prev_done: jax.Array  # the previous step ended an episode: this step is envpool's reset
    episode_return: jax.Array
    episode_length: jax.Array
    next_action: jax.Array  # Sarsa: the action already chosen for obs
    key: jax.Array


class SegmentLog(NamedTuple):
    """One thread's record of a chunk (`read_log`'s view of the device vector `empty_log`)."""

    losses: np.ndarray  # [segments] the loss of the thread's i-th segment of the chunk
    episodes: np.ndarray  # [episodes, 3] (segment index i, return, length) per finished episode


def empty_log(max_segments: int, config) -> jax.Array:
    """A thread's log of a chunk: one float32 vector, kept on the device and written in place
    by each segment (`_write_log`), so that a segment needs no host transfer; read once when
    the chunk ends (`read_log`). Layout: [segments run, episodes finished, losses [S],
    episode rows [N, 3]], S = max_segments. An env's episode ends on a valid step and the step
    after it is envpool's reset, so an env finishes at most (steps + 1) // 2 + 1 episodes in a
    chunk: N = envs_per_thread * that bound."""
    steps = max_segments * config.t_max
    rows = config.envs_per_thread * ((steps + 1) // 2 + 1)
    return jnp.zeros((2 + max_segments + 3 * rows,), jnp.float32)


def _write_log(log: jax.Array, max_segments: int, loss, done, ep_ret, ep_len) -> jax.Array:
    """Append one segment's loss and its finished episodes (done, ep_* [T, E]) to `log`.

    Writes past the capacity are dropped (counted all the same, so `read_log` can tell)."""
    size, first_row = log.shape[0], 2 + max_segments
    num_rows = (size - first_row) // 3
    segment, count = log[0].astype(jnp.int32), log[1].astype(jnp.int32)
    done = done.reshape(-1)
    rows = jnp.stack(
        [
            jnp.broadcast_to(log[0], done.shape),
            ep_ret.reshape(-1).astype(jnp.float32),
            ep_len.reshape(-1).astype(jnp.float32),
        ],
        axis=-1,
    )
    position = count + jnp.cumsum(done) - 1
    keep = done & (position < num_rows)
    index = first_row + 3 * position[:, None] + jnp.arange(3)
    index = jnp.where(keep[:, None], index, size)  # out of range: dropped
    log = log.at[index.reshape(-1)].set(rows.reshape(-1), mode="drop")
    log = log.at[jnp.where(segment < max_segments, 2 + segment, size)].set(loss, mode="drop")
    return log.at[0].add(1.0).at[1].add(jnp.sum(done, dtype=jnp.float32))


def read_log(log, max_segments: int) -> SegmentLog:
    """The host view of a log; raises if the chunk outgrew it (which the bound rules out)."""
    log = np.asarray(log)
    segments, count = int(log[0]), int(log[1])
    rows = log[2 + max_segments :].reshape(-1, 3)
    if segments > max_segments or count > rows.shape[0]:
        raise RuntimeError(
            f"a thread's log holds {max_segments} segments and {rows.shape[0]} episodes; the "
            f"chunk had {segments} and {count}"
        )
    return SegmentLog(log[2 : 2 + segments], rows[:count])


def q_segment_loss(network, params, target_params, rollout, last_obs, next_action, config):
    """Q-learning / Sarsa / n-step Q loss of one segment (Mnih et al. 2016, Alg. 1 and S2).

    Targets y_t (stop-gradient, from the target network theta^-):
      q:       r_t + gamma (1 - term_t) max_a Q(s_{t+1}, a; theta^-)
      sarsa:   r_t + gamma (1 - term_t) Q(s_{t+1}, a_{t+1}; theta^-)
      nstep_q: r_t + gamma (1 - term_t) [G_{t+1}, or max_a Q(s_{t+1}, a; theta^-) at the
               segment's end and at a truncation]
    loss = mean over valid steps of 0.5 (y_t - Q(s_t, a_t; theta))^2.

    Args:
      rollout: `actor_critic.Transition` leaves [T, E, ...]; last_obs [E, ...];
      next_action: [E] the action chosen for last_obs (Sarsa's a_{T}).
    Returns:
      (loss [], mean Q []).
    """
    t, e = rollout.action.shape
    all_obs = jnp.concatenate([rollout.obs, last_obs[None]], axis=0)
    flat_obs = all_obs.reshape((-1,) + all_obs.shape[2:])
    q_tm1 = network.apply(params, flat_obs).reshape((t + 1, e, -1))[:-1]
    q_next = network.apply(target_params, flat_obs).reshape((t + 1, e, -1))[1:]
    q_a = jnp.take_along_axis(q_tm1, rollout.action[..., None], axis=-1)[..., 0]
    discount_t = config.discount * (1.0 - rollout.terminated.astype(jnp.float32))
    per_step = lambda f: jax.vmap(jax.vmap(f))  # noqa: E731 - over [T, E]
    if config.method == "sarsa":
        a_next = jnp.concatenate([rollout.action[1:], next_action[None]], axis=0)
        td = per_step(value_learning.sarsa)(
            q_tm1, rollout.action, rollout.reward, discount_t, q_next, a_next
        )
    elif config.method == "q":
        td = per_step(value_learning.q_learning)(
            q_tm1, rollout.action, rollout.reward, discount_t, q_next
        )
    else:
        lambda_t = 1.0 - rollout.truncated.astype(jnp.float32)
        target = jax.vmap(multistep.lambda_returns, in_axes=1, out_axes=1)(
            rollout.reward, discount_t, jnp.max(q_next, axis=-1), lambda_t
        )
        td = jax.lax.stop_gradient(target) - q_a
    mask = rollout.valid.astype(jnp.float32)
    loss = jnp.sum(mask * 0.5 * td**2) / jnp.maximum(jnp.sum(mask), 1.0)
    return loss, jnp.mean(q_a)


# ----------------------------------------------------------------------------- threads


class _Worker:
    """One actor-learner thread's env, local state and jitted segment function."""

    def __init__(self, index: int, cfg: AsyncConfig, final_epsilon: float, make_env):
        env_seed = cfg.seed + 10_000 * (index + 1)  # envpool seeds env j with env_seed + j
        self.env = make_env(cfg.envs_per_thread, env_seed)
        self.index = index
        self.final_epsilon = final_epsilon
        e = cfg.envs_per_thread
        self.handle = self.env.handle
        self.local = LocalState(
            obs=jnp.asarray(self.env.first_obs),
            prev_done=jnp.zeros((e,), bool),
            episode_return=jnp.zeros((e,), jnp.float32),
            episode_length=jnp.zeros((e,), jnp.int32),
            next_action=jnp.zeros((e,), jnp.int32),
            key=jax.random.fold_in(jax.random.PRNGKey(cfg.seed), index + 1),
        )
        self.segment = None  # set by make_async once the network exists
        self.carry = None  # (handle, local) packed into one vector while a chunk runs
        self.log = None  # and this chunk's log (`empty_log`)


def _make_segment(trainer: AsyncTrainer, env_step):
    """The jitted body of one thread's update, on packed vectors (`rlax_zoo.packing`):
    (shared, target_shared, carry, log, epsilon) -> (carry, log, grads), where shared packs
    (params, opt_state), carry the thread's (handle, LocalState) and grads the gradient
    pytree; log is the thread's `empty_log` vector."""
    cfg, network = trainer.config, trainer.network
    e, a3c = cfg.envs_per_thread, cfg.method == "a3c"
    num_actions = trainer.num_actions

    def choose(params, obs, noise, epsilon):
        """a ~ pi(.|s) (A3C: Gumbel-max) or epsilon-greedy on Q(s, .), from pre-drawn noise."""
        gumbel, explore_u, random_a = noise
        if a3c:
            logits, _ = network.apply(params, obs)
            return jnp.argmax(logits + gumbel, axis=-1).astype(jnp.int32)
        greedy = jnp.argmax(network.apply(params, obs), axis=-1).astype(jnp.int32)
        return jnp.where(explore_u < epsilon, random_a, greedy)

    def draw_noise(key):
        """All the segment's randomness at once (one PRNG call each, not three per step)."""
        k_gumbel, k_explore, k_random = jax.random.split(key, 3)
        shape = (cfg.t_max, e)
        gumbel = (
            jax.random.gumbel(k_gumbel, shape + (num_actions,)) if a3c else jnp.zeros(shape + (1,))
        )
        explore_u = jax.random.uniform(k_explore, shape)
        random_a = jax.random.randint(k_random, shape, 0, num_actions, jnp.int32)
        return gumbel, explore_u, random_a

    def step(params, epsilon, carry, noise):
        handle, local = carry
        # Sarsa acts with the action chosen when its observation arrived (a_{t+1} of its target)
        action = (
            local.next_action
            if cfg.method == "sarsa"
            else choose(params, local.obs, noise, epsilon)
        )
        handle, (obs, reward, term, trunc, info) = env_step(handle, action)
        valid = ~local.prev_done
        done = (term | trunc) & valid
        transition = actor_critic.Transition(
            local.obs, action, reward.astype(jnp.float32), term, trunc, valid
        )
        logged = info.get("env_reward", reward)
        ep_ret = local.episode_return + jnp.where(valid, logged, 0.0)
        ep_len = local.episode_length + valid.astype(jnp.int32)
        next_action = (
            choose(params, obs, noise, epsilon) if cfg.method == "sarsa" else local.next_action
        )
        local = LocalState(
            obs=obs.astype(local.obs.dtype),
            prev_done=term | trunc,
            episode_return=jnp.where(done, 0.0, ep_ret),
            episode_length=jnp.where(done, 0, ep_len),
            next_action=next_action,
            key=local.key,
        )
        return (handle, local), (transition, done, ep_ret, ep_len)

    def loss_fn(params, target_params, rollout, last_obs, next_action):
        if a3c:
            loss, _ = actor_critic.actor_critic_loss(network, params, rollout, last_obs, cfg)
            return loss
        loss, _ = q_segment_loss(
            network, params, target_params, rollout, last_obs, next_action, cfg
        )
        return loss

    def segment(shared, target_shared, carry, log, epsilon):
        params, _ = trainer.shared_packer.unpack(shared)
        target_params, _ = trainer.shared_packer.unpack(target_shared)
        handle, local = trainer.carry_packer.unpack(carry)
        key, noise_key = jax.random.split(local.key)
        (handle, local), (rollout, done, ep_ret, ep_len) = jax.lax.scan(
            lambda c, x: step(params, epsilon, c, x),
            (handle, local._replace(key=key)),
            draw_noise(noise_key),
        )
        loss, grads = jax.value_and_grad(loss_fn)(
            params, target_params, rollout, local.obs, local.next_action
        )
        log = _write_log(log, cfg.segments_per_chunk, loss, done, ep_ret, ep_len)
        return trainer.carry_packer.pack((handle, local)), log, trainer.params_packer.pack(grads)

    return segment


# ----------------------------------------------------------------------------- trainer


class ChunkOutput(NamedTuple):
    episodes: np.ndarray  # [E, 3] (global-step offset in the chunk, return, length), sorted
    losses: np.ndarray  # [segments]
    segments_per_thread: np.ndarray  # [threads]
    eval_returns: np.ndarray  # [eval_envs] returns of the evaluation episodes (nan: unfinished)


def make_evaluator(config: AsyncConfig, network, vec_env):
    """A jitted evaluation of parameters on `vec_env`: one full episode per env.

    Every env first finishes the episode it is in (not counted: it began under older
    parameters), then plays one whole episode, greedy on Q (Q methods) or sampling pi (A3C).
    Returns (handle, obs, prev_done, returns [N]) with nan where the counted episode did not
    end within 2 * eval_max_steps + 2 steps.
    """
    a3c = config.method == "a3c"
    n = vec_env.num_envs

    @jax.jit
    def evaluate(params, handle, obs, prev_done, key):
        def body(carry, k):
            handle, obs, prev_done, phase, ret = carry
            if a3c:
                logits, _ = network.apply(params, obs)
                action = jax.random.categorical(k, logits).astype(jnp.int32)
            else:
                action = jnp.argmax(network.apply(params, obs), axis=-1).astype(jnp.int32)
            handle, (obs, reward, term, trunc, info) = vec_env.step(handle, action)
            valid = ~prev_done
            done = (term | trunc) & valid
            counting = phase == 1
            ret = ret + jnp.where(counting & valid, info.get("env_reward", reward), 0.0)
            phase = phase + (done & (phase < 2)).astype(jnp.int32)
            return (handle, obs, term | trunc, phase, ret), None

        keys = jax.random.split(key, 2 * config.eval_max_steps + 2)
        init = (handle, obs, prev_done, jnp.zeros((n,), jnp.int32), jnp.zeros((n,)))
        (handle, obs, prev_done, phase, ret), _ = jax.lax.scan(body, init, keys)
        return handle, obs, prev_done, jnp.where(phase == 2, ret, jnp.nan)

    return evaluate


@dataclasses.dataclass
class AsyncTrainer:
    """The threads of one run (the interface `rlax_zoo.runner` drives, without exact resume)."""

    config: AsyncConfig
    network: Any
    num_actions: int
    obs_shape: tuple
    optimizer: Any
    final_epsilons: np.ndarray
    workers: list
    apply: Any  # (shared, grads) -> shared, jitted, on packed vectors (see _make_segment)
    shared_packer: Any  # rlax_zoo.packing.Packer of (params, opt_state)
    params_packer: Any  # ... of the parameter (and gradient) pytree
    carry_packer: Any  # ... of one thread's (handle, LocalState)
    eval_env: Any = None
    evaluator: Any = None
    eval_carry: Any = None  # (handle, obs, prev_done) of the evaluation envs
    exact_resume: bool = False  # thread interleaving is not reproducible: resume restarts envs
    vec_env: Any = None

    @property
    def steps_per_iteration(self) -> int:
        return self.config.steps_per_iteration

    def init_state(self) -> SharedState:
        key = jax.random.PRNGKey(self.config.seed)
        obs = jnp.zeros((1,) + self.obs_shape, self.workers[0].env.obs_dtype)
        params = self.network.init(key, obs)
        return SharedState(
            params=params,
            target_params=params,
            opt_state=self.optimizer.init(params),
            env_steps=jnp.zeros((), jnp.int32),
            num_updates=jnp.zeros((), jnp.int32),
        )

    def schedule(self) -> list[tuple[bool, int]]:
        cfg = self.config
        return chunk_schedule(cfg.total_steps, cfg.steps_per_iteration, cfg.segments_per_chunk)

    def run_chunk(self, handle, state: SharedState, learn: bool, num_segments: int):
        """Run the threads until they have applied `num_segments` updates in total."""
        del learn
        cfg = self.config
        if num_segments > cfg.segments_per_chunk:
            raise ValueError(
                f"run_chunk: num_segments={num_segments} is more than the threads' logs hold "
                f"(segments_per_chunk={cfg.segments_per_chunk})"
            )
        lock = threading.Lock()
        start_steps = int(state.env_steps)
        pack_shared = self.shared_packer.pack
        shared = dict(
            params=pack_shared((state.params, state.opt_state)),  # and the optimizer state
            target_params=pack_shared((state.target_params, state.opt_state)),
            steps=start_steps,  # the global step counter T
            updates=int(state.num_updates),
            claimed=0,
        )
        counts, errors = [0] * len(self.workers), []
        seg_steps = [[] for _ in self.workers]  # T after each of a thread's updates
        for worker in self.workers:
            worker.log = empty_log(cfg.segments_per_chunk, cfg)
            worker.carry = self.carry_packer.pack((worker.handle, worker.local))

        def work(worker: _Worker):
            try:
                while True:
                    with lock:
                        if shared["claimed"] >= num_segments:
                            return
                        shared["claimed"] += 1
                        params, target_params = shared["params"], shared["target_params"]
                        frac = min(1.0, shared["steps"] / cfg.exploration_steps)
                    epsilon = np.float32(1.0 + frac * (worker.final_epsilon - 1.0))
                    worker.carry, worker.log, grads = worker.segment(
                        params, target_params, worker.carry, worker.log, epsilon
                    )
                    # Wait (GIL released) until this thread's gradients exist before applying
                    # them: applying a not-yet-computed gradient would make the shared
                    # parameters, and so every other thread's next segment, wait for this
                    # segment, chaining all threads into one sequence.
                    grads = grads.block_until_ready()
                    with lock:  # apply to the newest shared parameters (not the snapshot)
                        shared["params"] = self.apply(shared["params"], grads)
                        before = shared["steps"]
                        shared["steps"] = steps = before + cfg.steps_per_iteration
                        if steps // cfg.target_period > before // cfg.target_period:
                            shared["target_params"] = shared["params"]
                        shared["updates"] += 1
                        counts[worker.index] += 1
                    seg_steps[worker.index].append(steps)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        for worker in self.workers:
            worker.handle, worker.local = self.carry_packer.unpack(worker.carry)
            worker.carry = None
        params, opt_state = self.shared_packer.unpack(shared["params"])
        state = SharedState(
            params=params,
            target_params=self.shared_packer.unpack(shared["target_params"])[0],
            opt_state=opt_state,
            env_steps=jnp.int32(shared["steps"]),
            num_updates=jnp.int32(shared["updates"]),
        )
        episodes, losses = self._read_logs(seg_steps, start_steps)
        eval_returns = self.evaluate(state.params, int(state.num_updates))
        out = ChunkOutput(episodes, losses, np.asarray(counts), eval_returns)
        return None, state, out

    def _read_logs(self, seg_steps, start_steps: int):
        """The threads' device logs as (episodes [N, 3] sorted by global-step offset, losses
        [segments] in the order of the updates)."""
        episodes, losses = [], []
        for worker, steps in zip(self.workers, seg_steps, strict=True):
            log = read_log(worker.log, self.config.segments_per_chunk)
            worker.log = None
            offsets = np.asarray(steps, np.float64) - start_steps  # [segments of this thread]
            rows = log.episodes.astype(np.float64)
            rows[:, 0] = offsets[rows[:, 0].astype(np.int64)]
            episodes.append(rows)
            losses.append(np.stack([offsets, log.losses], axis=-1))
        episodes = np.concatenate(episodes) if episodes else np.zeros((0, 3))
        losses = np.concatenate(losses) if losses else np.zeros((0, 2))
        episodes = episodes[np.lexsort(episodes.T[::-1])]
        return episodes, losses[np.argsort(losses[:, 0], kind="stable"), 1]

    def evaluate(self, params, salt: int) -> np.ndarray:
        """Returns of one evaluation episode per eval env (empty when eval_envs = 0)."""
        if self.eval_env is None:
            return np.zeros((0,))
        key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed + 1), salt)
        handle, obs, prev_done = self.eval_carry
        handle, obs, prev_done, returns = self.evaluator(params, handle, obs, prev_done, key)
        self.eval_carry = (handle, obs, prev_done)
        return np.asarray(returns)

    def summarize(self, out: ChunkOutput) -> ChunkSummary:
        scalars = {
            "loss": np.array([out.losses.mean() if out.losses.size else np.nan]),
            "min_thread_share": np.array(
                [out.segments_per_thread.min() / max(1, out.segments_per_thread.sum())]
            ),
        }
        if out.eval_returns.size:
            finished = out.eval_returns[np.isfinite(out.eval_returns)]
            scalars["eval_return"] = np.array([finished.mean() if finished.size else np.nan])
        return ChunkSummary([out.episodes], scalars)


def make_async(config: AsyncConfig, make_env=None) -> AsyncTrainer:
    """Build the shared network and optimizer and one worker (env + jitted segment) per thread.

    `make_env(num_envs, seed) -> VecEnv` builds each thread's environment (default: by
    `config.env_backend`, envpool's `config.env_id` or the JAX CartPole); any env with envpool's
    xla step contract works, e.g. `rlax_zoo.envs.jax_cartpole.make_jax_cartpole`, which steps
    inside the thread's jitted call.
    """
    from rlax_zoo.config import validate

    validate(config)
    if make_env is None:
        jax_env = config.env_backend == "jax"
        make_env = make_jax_cartpole if jax_env else functools.partial(make_env_for, config)
    final_epsilons = thread_final_epsilons(config.seed, config.threads)
    workers = [
        _Worker(i, config, float(final_epsilons[i]), make_env) for i in range(config.threads)
    ]
    num_actions, obs_shape = workers[0].env.num_actions, workers[0].env.obs_shape
    torso = "nature_cnn" if len(obs_shape) == 3 else "mlp"
    if config.method == "a3c":
        network = ActorCriticNetwork(
            num_actions, torso, config.hidden_sizes, shared_torso=config.shared_torso
        )
    else:
        network = QNetwork(num_actions, torso, config.hidden_sizes)
    optimizer = actor_critic.make_optimizer(
        config, config.total_steps // config.steps_per_iteration
    )

    params = jax.eval_shape(  # shapes and dtypes only: the layouts need nothing else
        network.init,
        jax.random.PRNGKey(0),
        jax.ShapeDtypeStruct((1,) + obs_shape, workers[0].env.obs_dtype),
    )
    shared_packer = packing.Packer((params, jax.eval_shape(optimizer.init, params)))
    params_packer = packing.Packer(params)
    carry_packer = packing.Packer((workers[0].handle, workers[0].local))

    @jax.jit
    def apply(shared, packed_grads):
        """Shared RMSProp (or Adam) on the newest shared parameters."""
        params, opt_state = shared_packer.unpack(shared)
        grads = params_packer.unpack(packed_grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return shared_packer.pack((optax.apply_updates(params, updates), opt_state))

    trainer = AsyncTrainer(
        config=config,
        network=network,
        num_actions=num_actions,
        obs_shape=obs_shape,
        optimizer=optimizer,
        final_epsilons=final_epsilons,
        workers=workers,
        apply=apply,
        shared_packer=shared_packer,
        params_packer=params_packer,
        carry_packer=carry_packer,
    )
    for worker in workers:
        worker.segment = jax.jit(_make_segment(trainer, worker.env.step), donate_argnums=(2, 3))
    if config.eval_envs:
        eval_env = make_env(config.eval_envs, config.seed + 1_000_000)
        trainer.eval_env = eval_env
        trainer.evaluator = make_evaluator(config, network, eval_env)
        trainer.eval_carry = (
            eval_env.handle,
            jnp.asarray(eval_env.first_obs),
            jnp.zeros((config.eval_envs,), bool),
        )
    return trainer
