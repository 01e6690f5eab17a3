"""DreamerV3: an RSSM world model, and an actor and a critic trained in its imagination.

Paper: Hafner, Pasukonis, Ba, Lillicrap 2023, "Mastering Diverse Domains through World
Models" (DreamerV3, arXiv:2301.04104v1; equation numbers of v1). The robustness primitives
(symlog, two-hot regression, KL balancing with free bits, the percentile return scale, the
actor's loss) are in `rlax_zoo.world_model`; this file is the agent, top to bottom.

World model (eq. (1), the RSSM), for vector observations x_t and discrete actions:
  sequence model     h_t = GRU(h_{t-1}, [z_{t-1}, onehot(a_{t-1})])
  encoder            z_t ~ q(z_t | h_t, x_t)        G categoricals of C classes, unimix 1%
  dynamics predictor z^_t ~ p(z^_t | h_t)
  decoder            x^_t = dec(h_t, z_t)           MSE on symlog(x_t)
  reward predictor   r^_t: two-hot over symlog bins
  continue predictor c^_t: Bernoulli, target 1 - terminated_t
trained on sequences replayed from a buffer with eq. (4):
  L = mean_t [L_pred + beta_dyn L_dyn + beta_rep L_rep]  (beta = 1, 0.5, 0.1; free bits 1 nat).
The state (h, z) is reset to zeros at the first step of every episode (`is_first`), so a
replayed sequence may cross episode boundaries.

Behaviour ("Actor critic learning"): from every posterior state of the replayed batch the
model imagines `horizon` steps with the actor's actions. With imagined rewards r_i,
continues c_i and critic values v_i, the lambda-returns are
  R_i = r_{i+1} + gamma c_{i+1} ((1 - lambda) v_{i+1} + lambda R_{i+1}),  R_H = v_H,
and each imagined step has weight w_i = gamma^i prod_{j<=i} c_j (c_0 = 1 - terminated of the
start). The critic (two-hot over symlog bins) regresses R_i and, as a regulariser, the mean
of its slow EMA copy; the actor minimises eq. (11): REINFORCE with advantages
(R_i - v_i) / max(1, S), S the EMA of the 5th-95th percentile range of R, and an entropy
bonus. The critic also regresses lambda-returns of the replayed real sequences (their own
rewards and terminations; `replay_returns`), weighted by `replay_critic_scale` (the authors'
code's "repval" loss, scale 0.3; 0 gives v1's imagination-only critic): on CartPole this is
what teaches it that a cart drifting to the edge is about to fail (benchmarks/RESULTS.md).
Those returns bootstrap from the critic's values of the replayed states, or, with
`replay_bootstrap` 'imagined', from the imagined return R_0 started at each (the authors'
code); `actor_init_scale` 0.01 gives the authors' near-uniform first policy.
Termination and truncation differ: only termination sets the continue target to 0;
a time-limit end keeps c = 1 (the model bootstraps through it) and only resets the state.

Acting: `num_envs` pure-JAX environments (CartPole-v1, `rlax_zoo.envs.jax_cartpole`, or the
chain of `rlax_zoo.envs.chain`; envpool's step contract and auto-reset) or, with `envpool`,
envpool's own (any id with vector observations and discrete actions: CartPole-v1,
Acrobot-v1, MountainCar-v0, ...; through their xla step) step inside the jitted loop; the
agent filters its posterior state online and samples the actor's action. One iteration =
`env_steps` steps of every env into the replay, then `updates_per_iteration` updates (world
model, critic, actor), all one jitted `lax.scan` over iterations per chunk.

The defaults are the paper's algorithm at CPU scale: small networks (GRU 128, 8 x 8 latents,
128 units), sequences of 16 x 32, and learning rates, discount and train ratio chosen on
CartPole-v1 so that it learns within minutes on 2 cores (each field's help names the
paper's value).

`rlax-zoo train dreamer` writes a run folder (config.json, metrics.csv, results.json,
checkpoints/) through `rlax_zoo.runner.drive_config_chunks`: resume, Ctrl-C (checkpoint,
then exit) and a time budget as for every chunked trainer. Pure-JAX environments live in
the state, so a resumed run continues the very episodes it stopped in; an envpool env cannot
be saved, so its run logs every action (`DreamerState.action_log`) and a resumed run
replays them through a fresh env (`reconnect_envpool`), which continues the same episodes
too.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo import world_model as wm
from rlax_zoo.checkpointing import CheckpointError
from rlax_zoo.config import ConfigError, option, time_budget_option
from rlax_zoo.envs.chain import make_chain
from rlax_zoo.envs.envpool_env import (
    VecEnv,
    check_env_id,
    make_vec_env,
    replay_actions,
)
from rlax_zoo.envs.jax_cartpole import make_jax_cartpole
from rlax_zoo.multistep import lambda_returns
from rlax_zoo.runner import (
    ChunkRun,
    default_run_dir,
    drive_config_chunks,
    prepare_run_dir,
    write_results,
)

# Pure-JAX environments (envpool's step contract, stepped inside the jitted loop):
# (num_envs, seed) -> VecEnv. "Chain-v0": `rlax_zoo.envs.chain` with length 5, 12 steps.
ENVS = {"CartPole-v1": make_jax_cartpole, "Chain-v0": make_chain}


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
    """Every DreamerV3 hyperparameter; each is a flag of `rlax-zoo train dreamer`. The
    network sizes are the paper's smallest model scaled down for a 2-core CPU."""

    env_id: str = option(
        "CartPole-v1",
        "Environment: a pure-JAX one (CartPole-v1, Chain-v0) or, with --envpool, any envpool "
        "id with vector observations and discrete actions (e.g. Acrobot-v1).",
    )
    envpool: bool = option(
        False,
        "Step env_id through envpool's xla interface inside the jitted loop (CartPole-v1 is "
        "then envpool's, not the pure-JAX one); a resumed run replays the logged actions.",
    )
    seed: int = option(0, "Random seed (networks, environments, replay, imagination).", low=0)
    num_envs: int = option(4, "Environments stepped in lockstep.", low=1)
    env_steps: int = option(
        2,
        "Steps of every env per iteration (before its updates): with the defaults 8 env steps "
        "per update of 16 x 32 replayed steps, a train ratio of 64 (the paper's: 32-1024).",
        low=1,
    )
    updates_per_iteration: int = option(
        1, "World-model + actor-critic updates per iteration.", low=0
    )
    prefill: int = option(
        256, "Steps of every env with uniformly random actions before training.", low=1
    )
    replay_capacity: int = option(100_000, "Replay size in env steps (all envs together).", low=1)
    batch_size: int = option(16, "Replayed sequences per update.", low=1)
    sequence_length: int = option(32, "Steps per replayed sequence.", low=2)
    deter: int = option(128, "GRU units of the sequence model (h_t).", low=1)
    groups: int = option(8, "Categorical latents in z_t.", low=1)
    classes: int = option(8, "Classes per categorical latent.", low=2)
    units: int = option(128, "Units of every hidden layer.", low=1)
    layers: int = option(
        2, "Hidden layers of the encoder, decoder, heads, actor and critic.", low=1
    )
    num_bins: int = option(255, "Two-hot bins of the reward and critic heads.", low=2)
    unimix: float = option(
        0.01, "Uniform mixture in every categorical (latents, policy).", low=0.0, high=1.0
    )
    free_nats: float = option(1.0, "Free bits of L_dyn and L_rep, in nats.", low=0.0)
    beta_dyn: float = option(0.5, "Weight of the dynamics loss L_dyn (eq. (4)).", low=0.0)
    beta_rep: float = option(0.1, "Weight of the representation loss L_rep (eq. (4)).", low=0.0)
    horizon: int = option(15, "Imagination horizon H.", low=1)
    gamma: float = option(
        0.99,
        "Discount (the paper: 1 - 1/333 = 0.997; on CartPole within minutes 0.99 learned, "
        "0.997 did not hold 500: benchmarks/RESULTS.md).",
        low=0.0,
        high=1.0,
    )
    lambda_: float = option(0.95, "lambda of the returns.", low=0.0, high=1.0)
    entropy_coef: float = option(3e-4, "eta: the actor's entropy bonus (eq. (11)).", low=0.0)
    return_decay: float = option(
        0.99, "EMA decay of the return percentiles.", low=0.0, high=1.0, high_open=True
    )
    slow_critic_fraction: float = option(
        0.02, "EMA step of the slow critic towards the critic, per update.", low=0.0, high=1.0
    )
    replay_critic_scale: float = option(
        0.3,
        "Weight of the critic's loss on replayed real sequences (lambda-returns of the real "
        "rewards and terminations, plus the slow-critic regulariser): the authors' code's "
        "'repval' loss (danijar/dreamerv3, loss scale 0.3); 0: imagination only, as in v1.",
        low=0.0,
    )
    replay_bootstrap: str = option(
        "critic",
        "What the replay loss's lambda-returns bootstrap from: the critic's values of the "
        "replayed states, or ('imagined') the imagined lambda-return R_0 started from each of "
        "them, as the authors' code does (its repl_loss 'boot').",
        choices=("critic", "imagined"),
    )
    actor_init_scale: float = option(
        1.0,
        "Scale of the actor's output layer at initialisation (LeCun normal times this; the "
        "authors' code: 0.01, a near-uniform first policy).",
        low=0.0,
    )
    model_lr: float = option(
        1e-3, "Adam step size of the world model (the paper: 1e-4).", low=0.0, low_open=True
    )
    actor_lr: float = option(
        3e-4, "Adam step size of the actor (the paper: 3e-5).", low=0.0, low_open=True
    )
    critic_lr: float = option(
        1e-3, "Adam step size of the critic (the paper: 3e-5).", low=0.0, low_open=True
    )
    model_clip: float = option(
        1000.0, "Global-norm gradient clip of the world model.", low=0.0, low_open=True
    )
    actor_critic_clip: float = option(
        100.0, "Global-norm gradient clip of actor and critic.", low=0.0, low_open=True
    )
    iterations: int = option(3000, "Iterations (env steps + updates).", low=1)
    eval_every: int = option(250, "Iterations per chunk; metrics after each chunk.", low=1)
    checkpoint_every: int = option(1, "Chunks between checkpoints.", low=1)
    time_budget_s: float = time_budget_option()


# ----------------------------------------------------------------------------- networks


class DenseStack(nn.Module):
    """`layers` x (Dense, LayerNorm, SiLU), as DreamerV3's MLPs: [..., D] -> [..., units]."""

    units: int
    layers: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = nn.silu(nn.LayerNorm()(nn.Dense(self.units, use_bias=False)(x)))
        return x


class WorldModel(nn.Module):
    """The RSSM of eq. (1) with its heads; z is kept flat, [..., G * C]."""

    obs_size: int
    num_actions: int
    deter: int
    groups: int
    classes: int
    units: int
    layers: int
    num_bins: int
    unimix: float

    def setup(self):
        self.encoder = DenseStack(self.units, self.layers)
        self.sequence_in = DenseStack(self.units, 1)
        self.gru = nn.GRUCell(self.deter)
        self.prior_net = DenseStack(self.units, 1)
        self.prior_out = nn.Dense(self.groups * self.classes)
        self.posterior_net = DenseStack(self.units, 1)
        self.posterior_out = nn.Dense(self.groups * self.classes)
        self.decoder = DenseStack(self.units, self.layers)
        self.decoder_out = nn.Dense(self.obs_size)
        self.reward_net = DenseStack(self.units, self.layers)
        self.reward_out = nn.Dense(self.num_bins, kernel_init=nn.initializers.zeros)
        self.continue_net = DenseStack(self.units, self.layers)
        self.continue_out = nn.Dense(1)

    def _latent(self, logits):
        logits = logits.reshape(logits.shape[:-1] + (self.groups, self.classes))
        return wm.unimix_logits(logits, self.unimix)

    def sequence(self, h, z, action_onehot):
        """h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}]): [B, deter], [B, G*C], [B, A] -> [B, deter]."""
        h, _ = self.gru(h, self.sequence_in(jnp.concatenate([z, action_onehot], -1)))
        return h

    def prior(self, h):
        """Dynamics predictor logits (unimix log-probs) [B, G, C] from h [B, deter]."""
        return self._latent(self.prior_out(self.prior_net(h)))

    def embed(self, obs):
        """Encoder features of symlog(obs): [..., obs_size] -> [..., units]."""
        return self.encoder(wm.symlog(obs))

    def posterior(self, h, embedding):
        """Encoder logits (unimix log-probs) [B, G, C] from h and the obs embedding."""
        return self._latent(
            self.posterior_out(self.posterior_net(jnp.concatenate([h, embedding], -1)))
        )

    def observe(self, h, z, prev_action_onehot, is_first, embedding):
        """One filtering step: the state (h, z) and the previous action are zeroed where
        `is_first` [B], then h_t = GRU(...) and the encoder's logits of z_t.
        -> (h [B, deter], posterior logits [B, G, C])."""
        h, z, prev = (jnp.where(is_first[:, None], 0.0, x) for x in (h, z, prev_action_onehot))
        h = self.sequence(h, z, prev)
        return h, self.posterior(h, embedding)

    def heads(self, feat):
        """Decoder (symlog obs), reward logits [.., K] and continue logit [..] of [h, z]."""
        obs = self.decoder_out(self.decoder(feat))
        reward_logits = self.reward_out(self.reward_net(feat))
        continue_logit = self.continue_out(self.continue_net(feat))[..., 0]
        return obs, reward_logits, continue_logit

    def __call__(self, obs, action_onehot):
        """Touches every layer once (for `init`): one posterior step from zeros, its heads."""
        b = obs.shape[0]
        h = self.sequence(
            jnp.zeros((b, self.deter)), jnp.zeros((b, self.groups * self.classes)), action_onehot
        )
        self.prior(h)
        z = self.posterior(h, self.embed(obs)).reshape(b, -1)
        return self.heads(jnp.concatenate([h, z], -1))


class Head(nn.Module):
    """Actor (unimix log-probs over actions) or critic (two-hot logits) on [h, z]: the
    output layer is LeCun normal times `init_scale` at initialisation (0: zeros)."""

    outputs: int
    units: int
    layers: int
    init_scale: float = 1.0  # 0: zeros

    @nn.compact
    def __call__(self, feat):
        init = (
            nn.initializers.variance_scaling(self.init_scale**2, "fan_in", "truncated_normal")
            if self.init_scale
            else nn.initializers.zeros
        )
        return nn.Dense(self.outputs, kernel_init=init)(DenseStack(self.units, self.layers)(feat))


# ----------------------------------------------------------------------------- state


class SequenceReplay(NamedTuple):
    """The newest steps of every env, time-major ring buffers [cap, N, ...]: obs_t, a_t
    (the action taken at obs_t), r_t and terminated_t (of the step that led to obs_t),
    is_first_t; `next` (row written next) and `size` (rows filled), int32 scalars."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    is_first: jax.Array
    next: jax.Array
    size: jax.Array


class ActorCarry(NamedTuple):
    """What acting carries from step to step: the envs, their last outputs and the agent's
    filtered state. Leaves [N, ...]."""

    env: Any
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    is_first: jax.Array  # obs starts an episode (the step before it ended one)
    is_last: jax.Array  # obs ends an episode (terminated or truncated)
    h: jax.Array
    z: jax.Array
    prev_action: jax.Array  # int32
    episode_return: jax.Array


class DreamerState(NamedTuple):
    params: Any  # {"model", "actor", "critic", "slow_critic"}
    opt_state: Any  # {"model", "actor", "critic"}
    return_range: wm.ReturnRange
    replay: SequenceReplay
    carry: ActorCarry
    key: jax.Array
    iteration: jax.Array  # int32
    env_steps: jax.Array  # int32, all envs together
    episodes: jax.Array  # int32
    # envpool only: every action taken, [prefill + iterations * env_steps, num_envs] int32,
    # row t the actions of step t; a resumed run replays them through a fresh env
    action_log: jax.Array | None = None


class Imagined(NamedTuple):
    """An imagined batch, time-major: feat [H+1, M, F], action [H, M], reward [H, M] (r_1..r_H),
    cont [H+1, M] (c_0..c_H)."""

    feat: jax.Array
    action: jax.Array
    reward: jax.Array
    cont: jax.Array


# ----------------------------------------------------------------------------- losses


def world_model_loss(model: WorldModel, params, batch, key, config: DreamerConfig):
    """Eq. (4) on a replayed batch (fields [B, L, ...] of `SequenceReplay`): the loss, a dict
    of its parts, and the posterior states (h [B, L, deter], z [B, L, G*C]) for imagination."""
    b, length = batch["reward"].shape
    a_onehot = jax.nn.one_hot(batch["action"], model.num_actions)
    # a_{t-1}: the action before each step (`observe` zeroes it at an episode's first step).
    prev = jnp.concatenate([jnp.zeros_like(a_onehot[:, :1]), a_onehot[:, :-1]], 1)
    embedding = model.apply(params, batch["obs"], method=WorldModel.embed)

    def step(carry, inputs):
        h, z = carry
        emb, a, first, k = inputs
        h, post = model.apply(params, h, z, a, first, emb, method=WorldModel.observe)
        prior = model.apply(params, h, method=WorldModel.prior)
        z = wm.straight_through_sample(k, post).reshape(b, -1)
        return (h, z), (h, z, prior, post)

    swap = partial(jnp.swapaxes, axis1=0, axis2=1)
    inputs = (swap(embedding), swap(prev), swap(batch["is_first"]), jax.random.split(key, length))
    zeros = (jnp.zeros((b, model.deter)), jnp.zeros((b, model.groups * model.classes)))
    _, (h, z, prior, post) = jax.lax.scan(step, zeros, inputs)
    h, z, prior, post = swap(h), swap(z), swap(prior), swap(post)
    obs_pred, reward_logits, continue_logit = model.apply(
        params, jnp.concatenate([h, z], -1), method=WorldModel.heads
    )
    bins = wm.symlog_bins(config.num_bins)
    decoder = jnp.sum((obs_pred - wm.symlog(batch["obs"])) ** 2, -1)
    reward = wm.twohot_loss(reward_logits, batch["reward"], bins)
    cont = optax.sigmoid_binary_cross_entropy(continue_logit, 1.0 - batch["terminated"])
    dyn, rep = wm.kl_balancing_losses(post, prior, config.free_nats)
    loss = jnp.mean(decoder + reward + cont + config.beta_dyn * dyn + config.beta_rep * rep)
    parts = dict(
        decoder_loss=decoder.mean(),
        reward_loss=reward.mean(),
        continue_loss=cont.mean(),
        kl=dyn.mean(),  # after free bits, as the loss sees it
        kl_raw=wm.categorical_kl(post, prior).mean(),  # KL[q || p] before free bits
    )
    return loss, (parts, h, z)


def imagine(model: WorldModel, policy, params, h, z, start_cont, key, horizon: int):
    """DreamerV3's imagination ("Actor critic learning", the prior of eq. (1)): roll the
    model `horizon` steps from states h [M, deter], z [M, G*C] with actions drawn from
    policy(params["actor"], feat) -> log-probs [M, A] (no gradient: the actor learns by
    REINFORCE); start_cont [M] is c_0. -> `Imagined`."""
    params = jax.lax.stop_gradient(params)

    def step(carry, k):
        h, z = carry
        feat = jnp.concatenate([h, z], -1)
        k_act, k_z = jax.random.split(k)
        log_probs = policy(params["actor"], feat)
        action = jax.random.categorical(k_act, log_probs)
        h = model.apply(
            params["model"],
            h,
            z,
            jax.nn.one_hot(action, model.num_actions),
            method=WorldModel.sequence,
        )
        prior = model.apply(params["model"], h, method=WorldModel.prior)
        z = jax.nn.one_hot(jax.random.categorical(k_z, prior), model.classes).reshape(
            h.shape[0], -1
        )
        return (h, z), (feat, action)

    (h, z), (feats, actions) = jax.lax.scan(step, (h, z), jax.random.split(key, horizon))
    feat = jnp.concatenate([feats, jnp.concatenate([h, z], -1)[None]], 0)
    _, reward_logits, continue_logit = model.apply(
        params["model"], feat[1:], method=WorldModel.heads
    )
    reward = wm.twohot_mean(reward_logits, wm.symlog_bins(reward_logits.shape[-1]))
    cont = jnp.concatenate([start_cont[None], jax.nn.sigmoid(continue_logit)], 0)
    return Imagined(jax.lax.stop_gradient(feat), actions, reward, cont)


def imagined_returns(traj: Imagined, values, gamma: float, lambda_: float):
    """DreamerV3's lambda-returns ("Critic learning") R_0..R_{H-1} [H, M] and the weights
    w_0..w_{H-1} [H, M] of an imagined batch with critic values v_0..v_H [H+1, M] (the
    module doc's formulas; `rlax_zoo.multistep.lambda_returns` along each trajectory)."""
    discount = gamma * traj.cont[1:]
    returns = jax.vmap(lambda_returns, in_axes=(1, 1, 1, None), out_axes=1)(
        traj.reward, discount, values[1:], lambda_
    )
    weights = jnp.cumprod(gamma * traj.cont, 0) / gamma
    return returns, weights[:-1]


def replay_returns(batch: dict, values, gamma: float, lambda_: float):
    """lambda-returns along replayed sequences, for the critic's replay loss: targets G_t
    [B, L-1] for steps t = 0..L-2 and a mask [B, L-1] of the steps that have one.

      G_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v_{t+1} + lambda G_{t+1}),  G_{L-2} bootstraps
      from v_{L-1};  c = 1 - terminated.

    A step whose successor starts a new episode (`is_first`: the step was its episode's last,
    terminated or truncated) has no target (mask 0) and cuts the recursion, so nothing flows
    across episodes; a truncated episode's earlier steps bootstrap through c = 1 as usual.
    values: [B, L] the values of the replayed (posterior) states that the returns bootstrap
    from: the critic's, or (`replay_bootstrap` 'imagined') the imagined returns R_0."""
    next_first = batch["is_first"][:, 1:]
    reward = jnp.where(next_first, values[:, :-1], batch["reward"][:, 1:])
    discount = jnp.where(next_first, 0.0, gamma * (1.0 - batch["terminated"][:, 1:]))
    returns = jax.vmap(lambda_returns, in_axes=(0, 0, 0, None))(
        reward, discount, values[:, 1:], lambda_
    )
    return returns, (~next_first).astype(jnp.float32)


def sample_sequences(replay: SequenceReplay, key, batch_size: int, length: int) -> dict:
    """[batch_size, length] sequences of consecutive steps of one env each: a uniform env and
    a uniform start among the filled rows (a sequence never runs past the newest row).
    Returns a dict of the replay's fields (obs, action, reward, terminated, is_first)."""
    cap, n = replay.reward.shape
    k_env, k_start = jax.random.split(key)
    env = jax.random.randint(k_env, (batch_size,), 0, n)
    start = jax.random.randint(k_start, (batch_size,), 0, replay.size - length + 1)
    oldest = (replay.next - replay.size) % cap
    rows = (oldest + start[:, None] + jnp.arange(length)) % cap
    names = ("obs", "action", "reward", "terminated", "is_first")
    return {k: getattr(replay, k)[rows, env[:, None]] for k in names}


# ----------------------------------------------------------------------------- agent


class DreamerTrainer(NamedTuple):
    model: WorldModel
    actor: Head
    critic: Head
    init: Any  # key -> DreamerState
    train_chunk: Any  # (state, n) -> (state, metrics dict of [n] arrays)
    vec_env: VecEnv  # the environments that train_chunk steps


def make_env(config: DreamerConfig) -> VecEnv:
    """The config's `num_envs` environments (pure JAX, or envpool's with `envpool`), seeded
    with config.seed; ConfigError for an envpool env with image observations."""
    if not config.envpool:
        return ENVS[config.env_id](config.num_envs, config.seed)
    env = make_vec_env(config.env_id, config.num_envs, config.seed)
    if len(env.obs_shape) != 1:
        raise ConfigError(
            f"env_id: {config.env_id!r} observes {env.obs_shape} arrays; this DreamerV3 takes "
            "vector observations (no image encoder)"
        )
    return env


def check_config(config: DreamerConfig) -> None:
    """ConfigError for fields that do not fit together."""
    if not config.envpool and config.env_id not in ENVS:
        raise ConfigError(
            f"env_id: {config.env_id!r} is not a pure-JAX environment (one of "
            f"{', '.join(ENVS)}); pass --envpool for envpool's ids"
        )
    if config.envpool:
        check_env_id(config.env_id)
    per_env = config.replay_capacity // config.num_envs
    if per_env < max(config.prefill, config.sequence_length):
        raise ConfigError(
            f"replay_capacity: must hold prefill ({config.prefill}) and sequence_length "
            f"({config.sequence_length}) steps of each of the {config.num_envs} envs; got "
            f"{config.replay_capacity}"
        )
    if config.prefill < config.sequence_length:
        raise ConfigError(
            f"prefill: must be at least sequence_length ({config.sequence_length}) so the "
            f"first update has a whole sequence to replay; got {config.prefill}"
        )


def make_dreamer(config: DreamerConfig) -> DreamerTrainer:
    """init / train_chunk for `config` (see the module doc)."""
    check_config(config)
    probe = make_env(config)
    obs_size, num_actions, n = int(np.prod(probe.obs_shape)), probe.num_actions, config.num_envs
    model = WorldModel(
        obs_size,
        num_actions,
        config.deter,
        config.groups,
        config.classes,
        config.units,
        config.layers,
        config.num_bins,
        config.unimix,
    )
    actor_net = Head(num_actions, config.units, config.layers, config.actor_init_scale)
    critic = Head(config.num_bins, config.units, config.layers, init_scale=0.0)

    def actor_apply(params, feat):
        return wm.unimix_logits(actor_net.apply(params, feat), config.unimix)

    bins = wm.symlog_bins(config.num_bins)
    cap = config.replay_capacity // n
    optimizers = dict(
        model=optax.chain(
            optax.clip_by_global_norm(config.model_clip), optax.adam(config.model_lr, eps=1e-8)
        ),
        actor=optax.chain(
            optax.clip_by_global_norm(config.actor_critic_clip),
            optax.adam(config.actor_lr, eps=1e-5),
        ),
        critic=optax.chain(
            optax.clip_by_global_norm(config.actor_critic_clip),
            optax.adam(config.critic_lr, eps=1e-5),
        ),
    )

    # --------------------------------------------------------------- acting

    def act(params, carry: ActorCarry, key, random_actions: bool):
        """Filter the posterior with the newest obs, sample an action, step the envs.
        Returns (carry, (record fields for the replay), finished-episode return or nan)."""
        k_z, k_a = jax.random.split(key)
        first = carry.is_first
        m = params["model"]
        prev = jax.nn.one_hot(carry.prev_action, num_actions)
        embedding = model.apply(m, carry.obs, method=WorldModel.embed)
        h, post = model.apply(
            m, carry.h, carry.z, prev, first, embedding, method=WorldModel.observe
        )
        z = jax.nn.one_hot(jax.random.categorical(k_z, post), config.classes).reshape(n, -1)
        if random_actions:  # the prefill: uniform actions
            log_probs = jnp.zeros((n, num_actions))
        else:
            log_probs = actor_apply(params["actor"], jnp.concatenate([h, z], -1))
        action = jax.random.categorical(k_a, log_probs).astype(jnp.int32)
        record = (carry.obs, action, carry.reward, carry.terminated, first)
        env, (obs, reward, terminated, truncated, _) = probe.step(carry.env, action)
        obs, reward = obs.astype(jnp.float32), reward.astype(jnp.float32)
        done = terminated | truncated
        episode_return = carry.episode_return + reward
        finished = jnp.where(done, episode_return, jnp.nan)
        carry = ActorCarry(
            env,
            obs,
            reward,
            terminated.astype(jnp.float32),
            carry.is_last,  # envpool's auto-reset: the step after an episode's end starts one
            done,
            h,
            z,
            action,
            jnp.where(done, 0.0, episode_return),
        )
        return carry, record, finished

    def collect(params, carry, replay, log, first_row, key, steps: int, random_actions: bool):
        """`steps` steps of every env into the replay, and their actions into the action log
        (envpool) from row `first_row` on: (carry, replay, log, finished returns or nan)."""

        def body(carry, k):
            carry, record, finished = act(params, carry, k, random_actions)
            return carry, (record, finished)

        carry, (records, finished) = jax.lax.scan(body, carry, jax.random.split(key, steps))
        rows = (replay.next + jnp.arange(steps)) % cap
        fields = [buf.at[rows].set(x) for buf, x in zip(replay[:5], records, strict=True)]
        replay = SequenceReplay(
            *fields, (replay.next + steps) % cap, jnp.minimum(replay.size + steps, cap)
        )
        if log is not None:
            log = jax.lax.dynamic_update_slice(log, records[1], (first_row, 0))
        return carry, replay, log, finished

    # --------------------------------------------------------------- learning

    def update(state: DreamerState, key):
        k_sample, k_model, k_imagine = jax.random.split(key, 3)
        batch = sample_sequences(state.replay, k_sample, config.batch_size, config.sequence_length)
        params, opt_state = dict(state.params), dict(state.opt_state)
        (model_loss, (parts, h, z)), grads = jax.value_and_grad(
            lambda p: world_model_loss(model, p, batch, k_model, config), has_aux=True
        )(params["model"])
        upd, opt_state["model"] = optimizers["model"].update(grads, opt_state["model"])
        new_model = optax.apply_updates(params["model"], upd)

        m = h.shape[0] * h.shape[1]
        start_cont = 1.0 - batch["terminated"].reshape(m)
        traj = imagine(
            model,
            actor_apply,
            {"model": params["model"], "actor": params["actor"]},
            h.reshape(m, -1),
            z.reshape(m, -1),
            start_cont,
            k_imagine,
            config.horizon,
        )
        values = wm.twohot_mean(critic.apply(params["critic"], traj.feat), bins)
        returns, weights = imagined_returns(traj, values, config.gamma, config.lambda_)
        return_range, scale = wm.return_range_update(
            state.return_range, returns, config.return_decay
        )

        def actor_loss(p):
            log_probs = actor_apply(p, traj.feat[:-1])
            per_step = jax.vmap(
                wm.dreamer_actor_loss, in_axes=(1, 1, 1, 1, None, None), out_axes=1
            )(log_probs, traj.action, returns, values[:-1], scale, config.entropy_coef)
            entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, -1)
            return jnp.mean(weights * per_step), jnp.mean(entropy)

        slow = wm.twohot_mean(critic.apply(params["slow_critic"], traj.feat[:-1]), bins)

        # The imagination starts are the replayed posterior states, so step 0 of the imagined
        # batch holds their critic values and logits ([B * L] -> [B, L]).
        seq_shape = h.shape[:2]
        boot = returns[0] if config.replay_bootstrap == "imagined" else values[0]
        replay_target, replay_mask = replay_returns(
            batch, boot.reshape(seq_shape), config.gamma, config.lambda_
        )
        replay_slow = slow[0].reshape(seq_shape)[:, :-1]

        def critic_loss(p):
            logits = critic.apply(p, traj.feat[:-1])
            per_step = wm.twohot_loss(logits, returns, bins) + wm.twohot_loss(logits, slow, bins)
            loss = jnp.mean(weights * per_step)
            if config.replay_critic_scale:
                start = logits[0].reshape(seq_shape + logits.shape[-1:])[:, :-1]
                per_step = wm.twohot_loss(start, replay_target, bins) + wm.twohot_loss(
                    start, replay_slow, bins
                )
                loss += config.replay_critic_scale * jnp.mean(replay_mask * per_step)
            return loss

        (a_loss, entropy), a_grads = jax.value_and_grad(actor_loss, has_aux=True)(params["actor"])
        c_loss, c_grads = jax.value_and_grad(critic_loss)(params["critic"])
        upd, opt_state["actor"] = optimizers["actor"].update(a_grads, opt_state["actor"])
        new_actor = optax.apply_updates(params["actor"], upd)
        upd, opt_state["critic"] = optimizers["critic"].update(c_grads, opt_state["critic"])
        new_critic = optax.apply_updates(params["critic"], upd)
        f = config.slow_critic_fraction
        new_slow = jax.tree.map(lambda s, c: (1 - f) * s + f * c, params["slow_critic"], new_critic)
        params = dict(model=new_model, actor=new_actor, critic=new_critic, slow_critic=new_slow)
        metrics = dict(
            model_loss=model_loss,
            actor_loss=a_loss,
            policy_entropy=entropy,
            critic_loss=c_loss,
            imagined_return=jnp.mean(returns),
            return_scale=scale,
            **parts,
        )
        return state._replace(
            params=params, opt_state=opt_state, return_range=return_range
        ), metrics

    def iteration(state: DreamerState, _):
        key, k_collect, k_update = jax.random.split(state.key, 3)
        carry, replay, log, finished = collect(
            state.params,
            state.carry,
            state.replay,
            state.action_log,
            state.env_steps // n,
            k_collect,
            config.env_steps,
            False,
        )
        state = state._replace(carry=carry, replay=replay, key=key, action_log=log)
        state, metrics = jax.lax.scan(
            update, state, jax.random.split(k_update, config.updates_per_iteration)
        )
        metrics = jax.tree.map(jnp.mean, metrics)
        ended = ~jnp.isnan(finished)
        metrics.update(episodes=ended.sum(), return_sum=jnp.where(ended, finished, 0.0).sum())
        state = state._replace(
            iteration=state.iteration + 1,
            env_steps=state.env_steps + config.env_steps * n,
            episodes=state.episodes + ended.sum().astype(jnp.int32),
        )
        return state, metrics

    @partial(jax.jit, static_argnums=1, donate_argnums=0)
    def train_chunk(state: DreamerState, iterations: int):
        """`iterations` iterations: (state, metrics dict of [iterations] arrays)."""
        return jax.lax.scan(iteration, state, None, length=iterations)

    unused_env = [True]  # envpool: the env is at its first observation until init steps it

    def init(key) -> DreamerState:
        """Fresh networks, and the prefill's random steps from the envs' first observations
        (an envpool env used by an earlier init is reset first, so that these match it)."""
        k_model, k_actor, k_critic, k_prefill, key = jax.random.split(key, 5)
        env = probe if config.envpool else make_env(config)
        obs = jnp.asarray(env.first_obs, jnp.float32)
        if config.envpool and not unused_env[0]:
            obs = jnp.asarray(env.env.reset()[0], jnp.float32)
        unused_env[0] = False
        feat = jnp.zeros((1, config.deter + config.groups * config.classes))
        params = dict(
            model=model.init(k_model, obs, jnp.zeros((n, num_actions))),
            actor=actor_net.init(k_actor, feat),
            critic=critic.init(k_critic, feat),
        )
        params["slow_critic"] = jax.tree.map(jnp.copy, params["critic"])
        opt_state = {k: optimizers[k].init(params[k]) for k in optimizers}
        carry = ActorCarry(
            env.handle,
            obs,
            jnp.zeros((n,), jnp.float32),
            jnp.zeros((n,), jnp.float32),
            jnp.ones((n,), bool),
            jnp.zeros((n,), bool),
            jnp.zeros((n, config.deter)),
            jnp.zeros((n, config.groups * config.classes)),
            jnp.zeros((n,), jnp.int32),
            jnp.zeros((n,), jnp.float32),
        )
        replay = SequenceReplay(
            jnp.zeros((cap, n, obs_size), jnp.float32),
            jnp.zeros((cap, n), jnp.int32),
            jnp.zeros((cap, n), jnp.float32),
            jnp.zeros((cap, n), jnp.float32),
            jnp.zeros((cap, n), bool),
            jnp.int32(0),
            jnp.int32(0),
        )
        log = None
        if config.envpool:
            log = jnp.zeros((config.prefill + config.iterations * config.env_steps, n), jnp.int32)
        prefill = jax.jit(collect, static_argnums=(6, 7))
        carry, replay, log, finished = prefill(
            params, carry, replay, log, 0, k_prefill, config.prefill, True
        )
        episodes = jnp.int32(np.sum(~np.isnan(np.asarray(finished))))
        return DreamerState(
            params,
            opt_state,
            wm.init_return_range(),
            replay,
            carry,
            key,
            jnp.int32(0),
            jnp.int32(config.prefill * n),
            episodes,
            log,
        )

    return DreamerTrainer(model, actor_net, critic, init, train_chunk, probe)


# ----------------------------------------------------------------------------- runs


class DreamerRun(ChunkRun):
    def describe(self) -> str:
        r = self.results
        return (
            f"done in {r['train_seconds']:.0f} s: {r['iterations']} iterations, {r['env_steps']} "
            f"env steps, {r['episodes']} episodes; mean return of the last chunk's episodes "
            f"{r['last_return']:.1f}"
        )


def chunk_row(state: DreamerState, metrics: dict) -> dict:
    """One metrics row of a chunk: means of the update metrics and the mean return of the
    episodes that ended in it (nan if none did)."""
    m = {k: np.asarray(v) for k, v in metrics.items()}
    episodes = int(m.pop("episodes").sum())
    return_sum = float(m.pop("return_sum").sum())
    row = dict(
        iteration=int(state.iteration),
        env_steps=int(state.env_steps),
        episodes_in_chunk=episodes,
        mean_return=return_sum / episodes if episodes else float("nan"),
    )
    row.update({k: float(np.mean(v)) for k, v in m.items()})
    return row


def reconnect_envpool(vec_env: VecEnv, state: DreamerState) -> DreamerState:
    """A restored envpool run's state with a live env: `vec_env` (fresh, never stepped)
    replayed through the logged actions, which must lead to the saved observations
    (CheckpointError otherwise); a checkpoint cannot hold envpool's env itself."""
    steps = int(state.env_steps) // vec_env.num_envs
    handle, obs = replay_actions(vec_env, np.asarray(state.action_log[:steps]))
    if not np.array_equal(obs.astype(np.float32), np.asarray(state.carry.obs)):
        raise CheckpointError(
            "resume: replaying the logged actions did not reproduce the saved observations "
            "(is this the same envpool version and env?)"
        )
    return state._replace(carry=state.carry._replace(env=handle))


def run_dreamer(
    config: DreamerConfig | None = None,
    run_dir: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
) -> DreamerRun:
    """Train DreamerV3 in a run folder (see the module doc); metrics after every chunk."""
    default = default_run_dir("dreamer", config or DreamerConfig())
    config, run_dir, _ = prepare_run_dir(
        DreamerConfig, config, run_dir, resume, default, check_config
    )
    trainer = make_dreamer(config)
    template = trainer.init(jax.random.PRNGKey(config.seed))
    on_restore = None
    if resume is not None and config.envpool:
        trainer = make_dreamer(config)  # an env never stepped, to replay the log through

        def on_restore(state):
            return reconnect_envpool(trainer.vec_env, state)

    def after_chunk(state, chunk, m, dt, total_seconds):
        row = dict(chunk=chunk, **chunk_row(state, m))
        row.update(iterations_per_sec=len(m["model_loss"]) / dt, train_seconds=total_seconds)
        if progress:
            print(
                f"dreamer: iteration {row['iteration']}/{config.iterations}, env steps "
                f"{row['env_steps']}, mean return {row['mean_return']:.1f}, model loss "
                f"{row['model_loss']:.3f} ({row['iterations_per_sec']:.1f} iterations/s)",
                flush=True,
            )
        return [row]

    loop = drive_config_chunks(
        run_dir,
        config,
        template,
        trainer.train_chunk,
        after_chunk,
        resume is not None,
        max_chunks,
        what="the world model's, critic's or actor's loss",
        on_restore=on_restore,
    )
    results = {}
    if not loop.interrupted:
        last = loop.rows[-1]["mean_return"] if loop.rows else float("nan")
        results = write_results(
            run_dir,
            loop,
            int(loop.state.iteration),
            env_steps=int(loop.state.env_steps),
            episodes=int(loop.state.episodes),
            last_return=last,
        )
    return DreamerRun(run_dir, results, loop.rows, loop.interrupted, loop.state)
