"""IMPALA: actor-learner training with V-trace (Espeholt et al. 2018), one file.

The learner's loss (Section 4.2), over a batch of n-step trajectories [T, B] that actors
produced with a behaviour policy mu (its logits travel with the trajectory):

  L = -mean[rho^pg_s log pi(a_s|x_s) sg(q_s - V(x_s))] + value_cost mean[0.5 (v_s - V(x_s))^2]
      - entropy_cost mean[H(pi(.|x_s))]

with v_s the V-trace targets of eq. (1) and q_s, rho^pg_s as in `rlax_zoo.vtrace`. Means run
over valid steps (envpool's reset step, the step after an episode end whose action is ignored,
is masked out). Termination stops the trace and the bootstrap (gamma_t = 0); truncation by a
time limit cuts the trace but bootstraps from V of the final observation (lambda_t = 0 there).
`correction="none"` replaces every ratio by 1: the plain (on-policy) actor-critic loss applied
to off-policy data, the baseline of the paper's Section 5.3 / Figure E.1 comparison.

Two architectures share that loss:

* `architecture="threads"`, the paper's single-machine design (Section 3): `actors` Python
  threads, each stepping its own batch of `num_envs` envpool envs with the newest parameters
  it has received (one jitted `rollout_length`-step call, during which JAX releases the GIL),
  put trajectories with mu's logits and their parameter version into a bounded queue
  (`queue_size`); the learner (the calling thread) takes `batch_size` trajectories per update
  and publishes new parameters with version + 1. The policy lag of each trajectory (learner
  version minus actor version) is logged, and so is the split of the learner's time between
  waiting for data and updating. Thread interleaving makes these runs non-deterministic; resume
  restarts the envs (as the asynchronous methods do).
* `architecture="jit"`: actors and learner in one jitted `lax.scan`, vmapped over
  `num_seeds` (for small environments and accelerators). Deterministic, exact resume. Each
  iteration steps `num_envs` envs for `rollout_length` steps and updates once; with
  `policy_lag = k` the actors act with the parameters of k updates ago (an artificial,
  controlled lag for the V-trace-versus-no-correction experiment).

The learner's update can be data-parallel across devices: `make_learner_update(...,
mesh=...)` splits the trajectory batch over a device mesh with `shard_map`, sums the gradients
with `psum` and applies the same optimizer step on every device (equal to the single-device
update; `tests/test_impala.py` checks it with 8 host CPU devices). Across hosts the same mesh
spans `jax.distributed` processes: with `num_processes` > 1 every process runs its own actors
and contributes its trajectories to each global learner batch (`global_batch_from_process_local`),
process 0's run folder keeps the checkpoints (`rlax_zoo.runner.checkpoint_root`).

`rlax-zoo train impala [--architecture threads|jit] [--actors K] ...`
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo import policy_gradient
from rlax_zoo.agents import actor_critic
from rlax_zoo.agents.actor_critic import A2CConfig, Transition
from rlax_zoo.agents.base import ChunkSummary, VmappedTrainer, chunk_schedule
from rlax_zoo.config import ConfigError, option
from rlax_zoo.envs.envpool_env import make_env_for
from rlax_zoo.networks import TORSOS, ActorCriticNetwork
from rlax_zoo.vtrace import SCAN_IMPLS, vtrace_td_error_and_advantage

CORRECTIONS = ("vtrace", "none")
ARCHITECTURES = ("threads", "jit")


@dataclasses.dataclass(frozen=True)
class ImpalaConfig(A2CConfig):
    """Every IMPALA hyperparameter; each is a flag of `rlax-zoo train impala`."""

    architecture: str = option(
        "threads",
        "'threads': actor threads + a queue + a learner (the paper's design); 'jit': actors and "
        "learner in one jitted lax.scan, vmapped over seeds.",
        choices=ARCHITECTURES,
    )
    actors: int = option(2, "Actor threads (architecture=threads).", low=1)
    num_envs: int = option(4, "Envpool envs stepped by each actor.", low=1)
    rollout_length: int = option(
        10, "Trajectory length n (the paper's unroll length; 20 in its Atari runs).", low=1
    )
    batch_size: int = option(
        2, "Trajectories (of num_envs envs each) per learner update (threads).", low=1
    )
    queue_size: int = option(
        2, "Capacity of the actor -> learner queue, in trajectories (threads).", low=1
    )
    learning_rate: float = option(1e-3, "Learning rate.", low=0.0, low_open=True)
    optimizer_eps: float = option(1e-5, "Adam / RMSProp epsilon.", low=0.0, low_open=True)
    max_grad_norm: float = option(
        0.5, "Global gradient-norm clip (0 = no clipping; the paper's Atari runs: 40).", low=0.0
    )
    entropy_cost: float = option(0.01, "Weight of the entropy bonus.", low=0.0)
    value_cost: float = option(
        0.5, "Weight of the value loss (the paper's baseline cost).", low=0.0
    )
    normalize_advantages: bool = option(
        True, "Standardise the V-trace advantages of each batch (not in the paper)."
    )
    lambda_: float = option(
        1.0, "V-trace lambda (c_i = lambda min(c_bar, pi/mu)).", low=0.0, high=1.0
    )
    clip_rho_threshold: float = option(
        1.0, "rho_bar of the V-trace targets.", low=0.0, low_open=True
    )
    clip_c_threshold: float = option(1.0, "c_bar of the V-trace traces.", low=0.0, low_open=True)
    clip_pg_rho_threshold: float = option(
        1.0, "Clip of the ratio weighting the policy gradient.", low=0.0, low_open=True
    )
    correction: str = option(
        "vtrace",
        "Off-policy correction: 'vtrace', or 'none' (every ratio set to 1).",
        choices=CORRECTIONS,
    )
    policy_lag: int = option(
        0, "Artificial lag (architecture=jit): act with the parameters of k updates ago.", low=0
    )
    torso: str = option(
        "auto",
        "Network torso: 'auto' (mlp for vectors, impala_shallow for frames) or one of "
        + ", ".join(TORSOS)
        + ".",
        choices=("auto",) + TORSOS,
    )
    learner_devices: int = option(
        1,
        "Devices the learner's batch is split over (shard_map data parallelism, "
        "architecture=threads; -1: all local devices). batch_size * num_envs must divide by it.",
        low=-1,
    )
    num_processes: int = option(
        1,
        "Processes of a multi-host run (architecture=threads): each runs its own actors, and "
        "one learner batch spans every process's devices (jax.distributed, gloo on CPU).",
        low=1,
    )
    process_id: int = option(0, "This process's index, 0 .. num_processes - 1.", low=0)
    coordinator_address: str = option(
        "", "host:port of process 0's coordinator (needed when num_processes > 1)."
    )
    learner_chunks: int = option(
        0,
        "Accumulate the learner's gradient over this many slices of the batch (same update, "
        "less memory traffic: XLA:CPU convolution gradients run about 2x faster per frame on "
        "one trajectory at a time). 0: one slice per trajectory for frames, 1 otherwise.",
        low=0,
    )
    scan_impl: str = option(
        "sequential", "V-trace recursion: lax.scan or associative_scan.", choices=SCAN_IMPLS
    )
    total_steps: int = option(
        1_000_000, "Environment steps (per seed with architecture=jit).", low=1
    )
    iterations_per_chunk: int = option(
        100, "Learner updates per chunk (one progress/log row per chunk).", low=1
    )

    def check(self) -> None:
        super().check()
        if self.architecture == "threads" and self.num_seeds != 1:
            raise ConfigError(
                f"num_seeds must be 1 with architecture='threads' (got {self.num_seeds}); "
                "use architecture='jit' to train several seeds at once"
            )
        if self.learner_devices == 0:
            raise ConfigError("learner_devices must be >= 1 or -1 (all local devices), got 0")
        if self.architecture == "jit" and self.learner_devices != 1:
            raise ConfigError(
                f"learner_devices={self.learner_devices} needs architecture='threads' (the jit "
                "architecture vmaps seeds on one device)"
            )
        if self.num_processes > 1:
            if self.architecture != "threads":
                raise ConfigError(
                    f"num_processes={self.num_processes} needs architecture='threads'"
                )
            if not self.coordinator_address:
                raise ConfigError(
                    "coordinator_address (host:port of process 0) is needed when "
                    f"num_processes={self.num_processes} > 1"
                )
        if self.process_id >= self.num_processes:
            raise ConfigError(
                f"process_id must be in 0 .. num_processes - 1 = {self.num_processes - 1}, "
                f"got {self.process_id}"
            )
        if self.architecture == "threads" and self.policy_lag:
            raise ConfigError(
                "policy_lag is an artificial lag for architecture='jit'; with threads the lag "
                f"comes from the queue (got policy_lag={self.policy_lag})"
            )

    @property
    def steps_per_iteration(self) -> int:
        """Environment steps (per seed) consumed by one learner update."""
        batch = self.batch_size if self.architecture == "threads" else 1
        return self.rollout_length * self.num_envs * batch


def make_network(config: ImpalaConfig, obs_shape, num_actions: int) -> ActorCriticNetwork:
    """Policy logits [B, A] and value [B] from observations [B, ...] (Figure 3's torsos for
    frames, an MLP for vectors)."""
    torso = config.torso
    if torso == "auto":
        torso = "impala_shallow" if len(obs_shape) == 3 else "mlp"
    return ActorCriticNetwork(num_actions, torso, config.hidden_sizes, config.shared_torso)


# ----------------------------------------------------------------------------- the loss


class ImpalaOutput(NamedTuple):
    loss: jax.Array
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    # mean |log pi(a|x)/mu(a|x)| over valid steps: 0 on-policy, grows with the policy lag (the
    # mean ratio itself is 1 in expectation under mu whatever the lag)
    mean_abs_log_rho: jax.Array


def _apply_network(network, params, obs):
    """Time-major observations [T', B, ...] -> logits [T', B, A] and values [T', B]."""
    t, b = obs.shape[:2]
    logits, values = network.apply(params, obs.reshape((t * b,) + obs.shape[2:]))
    return logits.reshape((t, b, -1)), values.reshape((t, b))


def impala_loss_sums(network, params, rollout: Transition, behaviour_logits, last_obs, config):
    """The IMPALA loss (Espeholt et al. 2018, Section 4.2) as SUMS over valid steps.

    Divide by the number of valid steps for the mean (done by `impala_loss`; a data-parallel
    learner divides by the global count and sums over devices, which gives the same result).

    Args:
      network, params: an `ActorCriticNetwork` and its parameters (the learner's pi and V).
      rollout: `Transition` leaves [T, B, ...] (time-major trajectories of B envs).
      behaviour_logits: [T, B, A] mu's logits when the actions were taken.
      last_obs: [B, ...] the observation after the last step (bootstraps v_T = V(x_T)).
      config: lambda_, discount, clip thresholds, correction, scan_impl, value_cost,
        entropy_cost, normalize_advantages.
    Returns:
      (total [], ImpalaOutput of sums; mean_abs_log_rho holds the sum of |log rho|).
    """
    all_obs = jnp.concatenate([rollout.obs, last_obs[None]], axis=0)  # [T+1, B, ...]
    logits, values = _apply_network(network, params, all_obs)
    return impala_loss_sums_from_outputs(logits, values, rollout, behaviour_logits, config)


def impala_loss_sums_from_outputs(
    logits, values, rollout: Transition, behaviour_logits, config, axis_name=None
):
    """`impala_loss_sums` given the network's outputs: V-trace targets (eq. 1), the value
    regression toward v_s, the policy gradient with rho_s (r_s + gamma v_{s+1} - V(x_s)) and
    the entropy bonus (Section 4.2), as sums over valid steps.

    Args:
      logits: [T + 1, B, A] pi's logits at x_0 .. x_T (the last row is not used).
      values: [T + 1, B] V(x_0) .. V(x_T).
      rollout, behaviour_logits, config: as in `impala_loss_sums`.
      axis_name: inside `shard_map` over B, the mesh axis: the standardisation of the
        advantages (`normalize_advantages`) then uses the statistics of the whole batch.
    """
    t, b = rollout.action.shape
    logits = logits[:-1]
    log_pi = jax.nn.log_softmax(logits)
    log_mu = jax.nn.log_softmax(behaviour_logits)
    take = lambda lp: jnp.take_along_axis(lp, rollout.action[..., None], -1)[..., 0]  # noqa: E731
    log_rho = jax.lax.stop_gradient(take(log_pi) - take(log_mu))
    rho = jnp.exp(log_rho)
    if config.correction == "none":
        rho = jnp.ones_like(rho)
    discount_t = config.discount * (1.0 - rollout.terminated.astype(jnp.float32))
    lambda_t = config.lambda_ * (1.0 - rollout.truncated.astype(jnp.float32))

    def one_stream(v_tm1, v_t, r_t, discount_t, rho_t, lambda_t):
        return vtrace_td_error_and_advantage(
            v_tm1,
            v_t,
            r_t,
            discount_t,
            rho_t,
            lambda_t,
            clip_rho_threshold=config.clip_rho_threshold,
            clip_pg_rho_threshold=config.clip_pg_rho_threshold,
            clip_c_threshold=config.clip_c_threshold,
            scan_impl=config.scan_impl,
        )

    vt = jax.vmap(one_stream, in_axes=1, out_axes=1)(
        values[:-1], values[1:], rollout.reward, discount_t, rho, lambda_t
    )
    mask = rollout.valid.astype(jnp.float32)
    pg_advantage = vt.pg_advantage
    if config.normalize_advantages:  # over the batch's valid steps (a departure from the paper)
        total = (lambda x: x) if axis_name is None else (lambda x: jax.lax.psum(x, axis_name))
        count = jnp.maximum(total(jnp.sum(mask)), 1.0)
        centred = pg_advantage - total(jnp.sum(mask * pg_advantage)) / count
        pg_advantage = centred / (jnp.sqrt(total(jnp.sum(mask * centred**2)) / count) + 1e-8)
    flat = lambda x: x.reshape((t * b,) + x.shape[2:])  # noqa: E731
    # the primitives average over their batch: these weights turn that mean into a sum
    w = flat(mask) * (t * b)
    policy_loss = policy_gradient.policy_gradient_loss(
        flat(logits), flat(rollout.action), flat(pg_advantage), w
    )
    entropy = -policy_gradient.entropy_loss(flat(logits), w)
    value_loss = jnp.sum(mask * 0.5 * vt.errors**2)
    total = policy_loss + config.value_cost * value_loss - config.entropy_cost * entropy
    return total, ImpalaOutput(
        total, policy_loss, value_loss, entropy, jnp.sum(mask * jnp.abs(log_rho))
    )


def impala_loss(network, params, rollout: Transition, behaviour_logits, last_obs, config):
    """`impala_loss_sums` divided by the number of valid steps: (loss [], ImpalaOutput)."""
    count = jnp.maximum(jnp.sum(rollout.valid.astype(jnp.float32)), 1.0)
    total, out = impala_loss_sums(network, params, rollout, behaviour_logits, last_obs, config)
    return total / count, jax.tree.map(lambda x: x / count, out)


class Batch(NamedTuple):
    """What the learner trains on: trajectories [T, B, ...], mu's logits, bootstrap obs."""

    rollout: Transition
    behaviour_logits: jax.Array  # [T, B, A]
    last_obs: jax.Array  # [B, ...]


def make_learner_update(network, optimizer, config, mesh=None):
    """`update(params, opt_state, batch) -> (params, opt_state, ImpalaOutput)`, not jitted.

    With `mesh` (a `jax.sharding.Mesh` with one axis, "data"), the batch's B axis is split over
    the mesh's devices with `shard_map`: each device computes the gradient of its share of the
    summed loss divided by the GLOBAL count of valid steps, `psum` adds them (so the result is
    the single-device gradient, up to float summation order), and every device applies the
    same optimizer step to its replica of the parameters. B must divide by the device count.
    """

    def grads_and_out(params, batch, count, axis_name=None):
        # The network runs on `chunks` slices of B (forward and backward, unrolled: XLA:CPU
        # runs convolution gradients on a few envs at a time faster than on the whole batch
        # at once, and far slower inside a rolled loop); the loss sees the whole batch, so
        # the gradient is the whole batch's, advantage standardisation included.
        b = batch.behaviour_logits.shape[1]
        chunks = config.learner_chunks or (b if batch.last_obs.ndim == 4 else 1)  # 0: auto
        if b % chunks:
            raise ValueError(f"learner_chunks={chunks} must divide the batch's {b} trajectories")
        all_obs = jnp.concatenate([batch.rollout.obs, batch.last_obs[None]], axis=0)
        bounds = [(i * b // chunks, (i + 1) * b // chunks) for i in range(chunks)]
        parts, vjps = [], []
        for lo, hi in bounds:
            out, vjp = jax.vjp(lambda p, o=all_obs[:, lo:hi]: _apply_network(network, p, o), params)
            parts.append(out)
            vjps.append(vjp)
        logits, values = (jnp.concatenate(x, axis=1) for x in zip(*parts, strict=True))

        def loss(logits, values):
            total, out = impala_loss_sums_from_outputs(
                logits, values, batch.rollout, batch.behaviour_logits, config, axis_name
            )
            return total / count, out

        (g_logits, g_values), out = jax.grad(loss, argnums=(0, 1), has_aux=True)(logits, values)
        grads = None
        for (lo, hi), vjp in zip(bounds, vjps, strict=True):
            (g,) = vjp((g_logits[:, lo:hi], g_values[:, lo:hi]))
            grads = g if grads is None else jax.tree.map(jnp.add, grads, g)
        return grads, jax.tree.map(lambda x: x / count, out)

    def apply(params, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def count_of(batch: Batch):
        return jnp.maximum(jnp.sum(batch.rollout.valid.astype(jnp.float32)), 1.0)

    if mesh is None:

        def update(params, opt_state, batch: Batch):
            grads, out = grads_and_out(params, batch, count_of(batch))
            return (*apply(params, opt_state, grads), out)

        return update

    from jax.sharding import PartitionSpec as P

    batch_spec = batch_partition_specs()

    def sharded(params, opt_state, batch, count):
        grads, out = grads_and_out(params, batch, count, axis_name="data")
        grads, out = jax.lax.psum((grads, out), "data")
        return (*apply(params, opt_state, grads), out)

    sharded = jax.shard_map(
        sharded, mesh=mesh, in_specs=(P(), P(), batch_spec, P()), out_specs=P(), check_vma=False
    )

    def update(params, opt_state, batch: Batch):
        return sharded(params, opt_state, batch, count_of(batch))

    return update


def batch_partition_specs() -> Batch:
    """How a `Batch` is split over a "data" mesh axis: along B (trajectories), not T."""
    from jax.sharding import PartitionSpec as P

    by_env = P(None, "data")
    return Batch(Transition(*([by_env] * len(Transition._fields))), by_env, P("data"))


def global_batch_from_process_local(local: Batch, mesh) -> Batch:
    """One global `Batch` sharded over `mesh`'s "data" axis from each process's own share.

    Across hosts (`jax.distributed.initialize` in every process, one mesh over all processes'
    devices), each process passes the trajectories its own actors produced ([T, B_local]); the
    result is the [T, sum of B_local] batch that `make_learner_update(..., mesh=mesh)` takes.
    """
    from jax.sharding import NamedSharding

    def to_global(spec, x):
        return jax.make_array_from_process_local_data(NamedSharding(mesh, spec), np.asarray(x))

    return jax.tree.map(to_global, batch_partition_specs(), local)


# ----------------------------------------------------------------------------- jit architecture


class JitState(NamedTuple):
    """One seed's state for architecture="jit" (a leading [S] axis when vmapped)."""

    ac: actor_critic.ActorCriticState  # params, optimizer, envs' obs, episode stats, key
    history: Any  # params of the last `policy_lag` updates, oldest first ([lag, ...] leaves)
    behaviour_logits: jax.Array  # [K, A] mu's logits at the current observation

    @property
    def obs(self):
        return self.ac.obs


def make_jit_agent(config: ImpalaConfig, obs_shape, obs_dtype, num_actions: int):
    """init / act / observe / update of one seed for the fully jitted architecture."""
    base = actor_critic.make_agent(config, obs_shape, obs_dtype, num_actions)
    network = make_network(config, obs_shape, num_actions)
    optimizer = actor_critic.make_optimizer(
        config, config.total_steps // config.steps_per_iteration
    )
    learner_update = make_learner_update(network, optimizer, config)
    lag = config.policy_lag

    def init(key, first_obs) -> JitState:
        ac = base.init(key, first_obs)
        key, init_key = jax.random.split(ac.key)
        params = network.init(init_key, first_obs[:1])
        ac = ac._replace(params=params, opt_state=optimizer.init(params), key=key)
        history = jax.tree.map(lambda x: jnp.stack([x] * lag), params) if lag else ()
        return JitState(ac, history, jnp.zeros((first_obs.shape[0], num_actions), jnp.float32))

    def behaviour_params(state: JitState):
        return jax.tree.map(lambda h: h[0], state.history) if lag else state.ac.params

    def act(state: JitState):
        key, sample_key = jax.random.split(state.ac.key)
        logits, _ = network.apply(behaviour_params(state), state.ac.obs)
        actions = policy_gradient.categorical_policy(logits).sample(seed=sample_key)
        state = state._replace(ac=state.ac._replace(key=key), behaviour_logits=logits)
        return state, actions.astype(jnp.int32)

    def observe(state: JitState, *step):
        ac, transition, out = base.observe(state.ac, *step)
        return state._replace(ac=ac), (transition, state.behaviour_logits), out

    def update(state: JitState, rollout):
        transitions, behaviour_logits = rollout
        batch = Batch(transitions, behaviour_logits, state.ac.obs)
        params, opt_state, out = learner_update(state.ac.params, state.ac.opt_state, batch)
        history = state.history
        if lag:  # drop the oldest, append the parameters that acted until now
            history = jax.tree.map(
                lambda h, p: jnp.concatenate([h[1:], p[None]]), history, state.ac.params
            )
        ac = state.ac._replace(params=params, opt_state=opt_state)
        return state._replace(ac=ac, history=history), out

    return actor_critic.ActorCriticAgent(init, act, observe, update, network)


def make_jit_impala(config: ImpalaConfig, vec_env=None) -> VmappedTrainer:
    """The fully jitted architecture: `num_seeds` x `num_envs` envs stepped `rollout_length`
    times, then one V-trace update per seed (Section 4.2), all inside one `lax.scan` chunk."""
    if vec_env is None:
        vec_env = make_env_for(config, config.num_seeds * config.num_envs, config.seed)
    agent = make_jit_agent(config, vec_env.obs_shape, vec_env.obs_dtype, vec_env.num_actions)
    return actor_critic.make_rollout_trainer(config, vec_env, agent)


# ----------------------------------------------------------------------------- threads


class LearnerState(NamedTuple):
    params: Any
    opt_state: Any
    env_steps: jax.Array  # [] int32, steps of the trajectories the learner consumed
    num_updates: jax.Array  # [] int32, the parameter version


class Trajectory(NamedTuple):
    batch: Batch  # leaves [T, K, ...] / [K, ...]
    steps: actor_critic.StepOutput  # leaves [T, K]
    version: int  # the parameter version mu was
    actor: int


class _Actor:
    """One actor thread's envs, state and jitted rollout."""

    def __init__(self, index: int, config: ImpalaConfig):
        # distinct envs and action noise in every process: actor `index` of process p is the
        # global actor p * actors + index
        index_global = config.process_id * config.actors + index
        env_seed = config.seed + 10_000 * (index_global + 1)  # envpool seeds env j: env_seed + j
        self.env = make_env_for(config, config.num_envs, env_seed)
        self.index = index
        self.handle = self.env.handle
        k = config.num_envs
        # A2C's per-env bookkeeping (its observe() is reused); the actor holds no parameters
        self.state = actor_critic.ActorCriticState(
            params=(),
            opt_state=(),
            obs=jnp.asarray(self.env.first_obs),
            prev_done=jnp.zeros((k,), bool),
            episode_return=jnp.zeros((k,), jnp.float32),
            episode_length=jnp.zeros((k,), jnp.int32),
            key=jax.random.fold_in(jax.random.PRNGKey(config.seed), index_global + 1),
            env_steps=jnp.zeros((), jnp.int32),
        )
        self.rollout = None  # set by make_threaded_impala once the network exists
        self.busy_seconds = 0.0


def _make_rollout(network, env, config: ImpalaConfig):
    """(params, handle, ActorCriticState) -> (handle, state, Batch, StepOutput), to be jitted.

    `rollout_length` steps of the actor's envs, sampling a ~ mu = softmax(logits) from
    pre-drawn Gumbel noise; A2C's `observe` records the transitions (envpool's reset steps
    marked invalid) and the episode statistics.
    """
    observe = actor_critic.make_agent(config, env.obs_shape, env.obs_dtype, env.num_actions).observe

    def rollout(params, handle, state: actor_critic.ActorCriticState):
        key, noise_key = jax.random.split(state.key)
        gumbel = jax.random.gumbel(
            noise_key, (config.rollout_length, config.num_envs, env.num_actions)
        )

        def step(carry, noise):
            handle, s = carry
            logits, _ = network.apply(params, s.obs)
            action = jnp.argmax(logits + noise, axis=-1).astype(jnp.int32)
            handle, (obs, reward, term, trunc, info) = env.step(handle, action)
            s, transition, out = observe(
                s, action, obs, reward, term, trunc, info.get("env_reward", reward)
            )
            return (handle, s), (transition, logits, out)

        (handle, state), (transitions, logits, steps) = jax.lax.scan(step, (handle, state), gumbel)
        state = state._replace(key=key)
        return handle, state, Batch(transitions, logits, state.obs), steps

    return rollout


class ThreadsChunkOutput(NamedTuple):
    episodes: np.ndarray  # [E, 3] (env-step offset in the chunk, return, length)
    updates: dict  # name -> [updates] learner outputs, plus policy_lag
    learner_update_seconds: float
    learner_wait_seconds: float
    actor_seconds: float


@dataclasses.dataclass
class ThreadedTrainer:
    """Actor threads + queue + learner (the interface `rlax_zoo.runner` drives)."""

    config: ImpalaConfig
    network: Any
    optimizer: Any
    obs_shape: tuple
    obs_dtype: Any
    actors: list
    update: Any  # jitted (params, opt_state, Batch) -> (params, opt_state, ImpalaOutput)
    leftover: list = dataclasses.field(default_factory=list)  # trajectories not yet consumed
    exact_resume: bool = False  # thread interleaving is not reproducible: resume restarts envs
    vec_env: Any = None

    @property
    def steps_per_iteration(self) -> int:
        return self.config.steps_per_iteration

    def init_state(self) -> LearnerState:
        obs = jnp.zeros((1,) + self.obs_shape, self.obs_dtype)
        params = self.network.init(jax.random.PRNGKey(self.config.seed), obs)
        return LearnerState(
            params, self.optimizer.init(params), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
        )

    def schedule(self) -> list[tuple[bool, int]]:
        cfg = self.config
        return chunk_schedule(cfg.total_steps, cfg.steps_per_iteration, cfg.iterations_per_chunk)

    def run_chunk(self, handle, state: LearnerState, learn: bool, num_updates: int):
        """Run the actors and perform `num_updates` learner updates on their trajectories."""
        del learn
        cfg = self.config
        trajectories: queue.Queue = queue.Queue(maxsize=cfg.queue_size)
        stop = threading.Event()
        errors: list[BaseException] = []
        published = {"params": state.params, "version": int(state.num_updates)}
        actor_device = jax.local_devices()[0]

        def act(actor: _Actor):
            try:
                while not stop.is_set():
                    params, version = published["params"], published["version"]  # atomic reads
                    # a learner split over devices publishes replicated parameters; envpool's
                    # step runs on one device, so the actor takes its own single-device copy
                    params = jax.device_put(
                        jax.tree.map(lambda x: x.addressable_data(0), params), actor_device
                    )
                    t0 = time.perf_counter()
                    actor.handle, actor.state, batch, steps = actor.rollout(
                        params, actor.handle, actor.state
                    )
                    jax.block_until_ready(batch)
                    actor.busy_seconds += time.perf_counter() - t0
                    item = Trajectory(batch, steps, version, actor.index)
                    while True:
                        try:
                            trajectories.put(item, timeout=0.05)
                            break
                        except queue.Full:
                            if stop.is_set():
                                self.leftover.append(item)
                                return
            except BaseException as exc:  # noqa: BLE001 - re-raised by the learner
                errors.append(exc)

        def next_trajectory() -> Trajectory:
            if self.leftover:
                return self.leftover.pop(0)
            while True:
                if errors:
                    raise errors[0]
                try:
                    return trajectories.get(timeout=0.05)
                except queue.Empty:
                    continue

        busy_before = sum(a.busy_seconds for a in self.actors)
        threads = [threading.Thread(target=act, args=(a,), daemon=True) for a in self.actors]
        for t in threads:
            t.start()
        params, opt_state = state.params, state.opt_state
        version = int(state.num_updates)
        consumed, outs, lags = [], [], []  # step outputs of the trajectories, in order
        wait = busy = 0.0
        try:
            for _ in range(num_updates):
                t0 = time.perf_counter()
                items = [next_trajectory() for _ in range(cfg.batch_size)]
                t1 = time.perf_counter()
                batch = _stack_batches([it.batch for it in items])
                params, opt_state, out = self.update(params, opt_state, batch)
                version += 1
                published["params"], published["version"] = params, version
                jax.block_until_ready(params)
                busy += time.perf_counter() - t1
                wait += t1 - t0
                lags.append(np.mean([version - 1 - it.version for it in items]))
                outs.append(out)
                consumed.extend(it.steps for it in items)
        finally:
            stop.set()
            for t in threads:
                t.join()
            while not trajectories.empty():
                self.leftover.append(trajectories.get_nowait())
        if errors:
            raise errors[0]
        # finished episodes, read back once per chunk (not per update)
        episodes = []
        trajectory_steps = cfg.rollout_length * cfg.num_envs
        for i, steps in enumerate(jax.device_get(consumed)):
            done = steps.done
            offsets = (np.nonzero(done)[0] + 1) * cfg.num_envs + i * trajectory_steps
            rets, lens = steps.episode_return[done], steps.episode_length[done]
            episodes.extend(zip(offsets, rets, lens, strict=True))
        env_steps = int(state.env_steps) + len(consumed) * trajectory_steps
        updates = {k: np.asarray(v) for k, v in jax.device_get(_stack(outs))._asdict().items()}
        updates["policy_lag"] = np.asarray(lags, np.float64)
        state = LearnerState(params, opt_state, jnp.int32(env_steps), jnp.int32(version))
        eps = np.array(sorted(episodes), np.float64).reshape(-1, 3)
        actor_seconds = sum(a.busy_seconds for a in self.actors) - busy_before
        return None, state, ThreadsChunkOutput(eps, updates, busy, wait, actor_seconds)

    def summarize(self, out: ThreadsChunkOutput) -> ChunkSummary:
        scalars = {name: np.array([values.mean()]) for name, values in out.updates.items()}
        total = out.learner_update_seconds + out.learner_wait_seconds
        scalars["learner_wait_fraction"] = np.array([out.learner_wait_seconds / max(total, 1e-9)])
        scalars["actor_seconds"] = np.array([out.actor_seconds])
        scalars["learner_seconds"] = np.array([out.learner_update_seconds])
        return ChunkSummary([out.episodes], scalars)


def _stack(outs):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


def _stack_batches(batches: list[Batch]) -> Batch:
    """Concatenate trajectories along the env axis: [T, K] x n -> [T, n K]; obs [K] -> [n K]."""
    rollout = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *[b.rollout for b in batches])
    logits = jnp.concatenate([b.behaviour_logits for b in batches], axis=1)
    last_obs = jnp.concatenate([b.last_obs for b in batches], axis=0)
    return Batch(rollout, logits, last_obs)


def initialize_distributed(config: ImpalaConfig) -> None:
    """`jax.distributed.initialize` for `num_processes` > 1 (gloo collectives on CPU); call it
    before JAX computes anything in the process (`rlax-zoo train` does, before it sizes XLA's
    CPU thread pool). A no-op for one process or when already initialized."""
    if config.num_processes == 1 or jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        config.coordinator_address,
        num_processes=config.num_processes,
        process_id=config.process_id,
    )


def learner_mesh(config: ImpalaConfig):
    """The learner's one-axis ("data") device mesh, or None for a single-device learner.

    `learner_devices` counts this process's devices; with `num_processes` > 1 the mesh holds
    that many devices of every process, process by process."""
    n = jax.local_device_count() if config.learner_devices == -1 else config.learner_devices
    if n > jax.local_device_count():
        raise ConfigError(
            f"learner_devices={config.learner_devices}: only {jax.local_device_count()} local "
            "devices"
        )
    if n == 1 and jax.process_count() == 1:
        return None
    batch = config.batch_size * config.num_envs
    if batch % n:
        raise ConfigError(
            f"learner_devices={n} must divide the learner batch batch_size * num_envs = {batch}"
        )
    from jax.sharding import Mesh

    by_process = [
        sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
        for p in range(jax.process_count())
    ]
    return Mesh(np.array([d for ds in by_process for d in ds[:n]]), ("data",))


def make_threaded_impala(config: ImpalaConfig) -> ThreadedTrainer:
    """The paper's single-machine design (Section 3): one envpool batch and jitted rollout per
    actor thread, and the learner's jitted V-trace update (sharded if `learner_devices` > 1)."""
    initialize_distributed(config)
    actors = [_Actor(i, config) for i in range(config.actors)]
    env = actors[0].env
    network = make_network(config, env.obs_shape, env.num_actions)
    optimizer = actor_critic.make_optimizer(
        config, config.total_steps // config.steps_per_iteration
    )
    for actor in actors:
        actor.rollout = jax.jit(_make_rollout(network, actor.env, config), donate_argnums=(2,))
    mesh = learner_mesh(config)
    # params are not donated: actors may still be reading the published ones
    update = jax.jit(make_learner_update(network, optimizer, config, mesh), donate_argnums=(1,))
    if mesh is not None:  # place the inputs the way the sharded update takes them
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        replicated = NamedSharding(mesh, P())
        shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), batch_partition_specs())
        jitted = update

        def update(params, opt_state, batch: Batch):
            params, opt_state = jax.device_put((params, opt_state), replicated)
            if jax.process_count() > 1:  # this process's trajectories: its share of B
                return jitted(params, opt_state, global_batch_from_process_local(batch, mesh))
            return jitted(params, opt_state, jax.device_put(batch, shardings))

    return ThreadedTrainer(
        config=config,
        network=network,
        optimizer=optimizer,
        obs_shape=env.obs_shape,
        obs_dtype=env.obs_dtype,
        actors=actors,
        update=update,
    )


def make_impala(config: ImpalaConfig):
    """The trainer for `config.architecture` (config validated first)."""
    from rlax_zoo.config import validate

    validate(config)
    if config.architecture == "jit":
        return make_jit_impala(config)
    return make_threaded_impala(config)
