"""PR-SSM: the probabilistic recurrent state-space model (Doerr et al. 2018, ICML).

The model, eq. (8):
    x_1 ~ p(x_1) = N(0, I),
    f_t = f(x_{t-1}, u_{t-1}),   f_d ~ GP(m_d, k_d) one sparse GP per latent dimension d,
    x_t | f_t ~ N(f_t, diag(sigma_x^2)),
    y_t | x_t ~ N(C x_t, diag(sigma_y^2)),   C picks the first D_y latent dimensions.
The GP mean function is the identity on the state (m_d(x, u) = x_d, so each GP learns the
change of its dimension; `mean_function="zero"` turns it off), as in the authors' code.

The variational posterior, eq. (15) (right):
    q(x_{1:T}, f_{2:T}, z) = q(x_1) prod_d q(z_d) prod_t p(x_t | f_t) p(f_t | x_{t-1}, z),
with q(x_1) from a recognition model (an MLP on the first `recognition_window` steps of
u and y) and q(z_d) = N(mu_d, S_d), S_d full. q keeps the model's own transitions, so it
does not grow with T and keeps the correlations between time steps.

The ELBO, eq. (17):
    L = sum_t E_q[log p(y_t | x_t)] - sum_d KL(q(z_d) || p(z_d)) - KL(q(x_1) || p(x_1)),
estimated by eq. (19): N trajectories sampled through the Markov chain with the
reparameterisation trick, x_t = mu_f + sqrt(var_f + sigma_x^2) eps with (mu_f, var_f)
the sparse GP's marginal given q(z_d) (`sequence.gp.sparse_gp_conditional`), the data
term averaged over the N samples; minibatches of B sub-trajectories of length H scale the
data term and q(x_1)'s KL by T_train / (B H), so the estimate is unbiased for the whole
record. One `lax.scan` over time, jitted; training chunks are `lax.scan`s over Adam steps.

`inducing_samples="trajectory"` (an option, not the paper's estimator): each sampled
trajectory draws one z ~ q(z) and follows p(f_t | x_{t-1}, z), so a trajectory sees one
function all along, as in the model (Ialongo et al. 2019, "Overcoming mean-field
approximations in recurrent Gaussian process models"); eq. (19) instead integrates z out
anew at every step, which treats the function's uncertainty as fresh noise per step. The
trajectory draws sample q of eq. (15) exactly, so they estimate eq. (17)'s expectation
without bias; eq. (19)'s per-step marginal is the paper's approximation of it.

Departures of the authors' public code from the paper, each offered as an option (the
defaults follow the paper):
  - `noise_scale="variance"`: the code draws x_t = mu + eps * (var_f + sigma_x^2), i.e.
    scales the noise by the variance instead of the standard deviation;
  - `shared_noise=True`: the code draws one eps per sample and time step, shared by all
    latent dimensions;
  - `sample_reduction="sum"`: the code sums the log-likelihood over the N samples instead
    of averaging, which weighs the data N times more than the KL terms.

`input_lags=L` (an option; 0, the paper's model, by default) feeds the transition GPs a tapped
delay line of the input, f_t = f(x_{t-1}, u_{t-1}, u_{t-2}, ..., u_{t-1-L}), for systems whose
response lags their input (the hydraulic actuator): the state need not learn to remember
the input's recent past. `lagged_inputs` builds it from the record (the first row repeated
before the start); everything downstream sees an input of D_u (L + 1) dimensions.

Shapes: B sub-trajectories, H steps, S samples, Dx latent, Du input, Dy output dims,
P inducing points.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlax_zoo.config import ConfigError, option, time_budget_option
from sequence.gp import (
    SparseGPCache,
    gauss_kl,
    se_kernel,
    sparse_gp_precompute,
    sparse_gp_predict,
    sparse_gp_predict_given_z,
    sparse_gp_sample_weights,
)

LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class PRSSMConfig:
    data: str = option(
        "../shared/data/sysid/actuator.csv",
        "CSV with input columns u... then output columns y... (one row per time step).",
    )
    split: float = option(
        0.5,
        "Test part starts here: a fraction in (0, 1) or a row count >= 1.",
        low=0.0,
        low_open=True,
    )
    seed: int = option(0, "Random seed.", low=0)
    latent_dim: int = option(4, "Latent state dimension D_x (>= number of outputs).", low=1)
    num_inducing: int = option(20, "Inducing points P per latent dimension.", low=1)
    num_samples: int = option(50, "Sampled trajectories N in the ELBO estimate, eq. (19).", low=1)
    batch_size: int = option(5, "Sub-trajectories per minibatch B.", low=1)
    seq_len: int = option(100, "Length H of a sub-trajectory.", low=2)
    recognition_window: int = option(
        16, "Steps of u and y the recognition model reads to infer q(x_1).", low=1
    )
    recognition_hidden: int = option(32, "Hidden units of the recognition MLP.", low=1)
    iterations: int = option(600, "Adam steps.", low=1)
    time_budget_s: float = time_budget_option()
    learning_rate: float = option(0.01, "Adam learning rate.", low=0.0, low_open=True)
    lr_schedule: str = option(
        "cosine",
        "Learning rate over the run: constant, or cosine decay to 0.",
        choices=("constant", "cosine"),
    )
    max_grad_norm: float = option(10.0, "Global gradient-norm clip.", low=0.0, low_open=True)
    mean_function: str = option(
        "identity",
        "GP prior mean: identity on the state (learn changes) or zero.",
        choices=("identity", "zero"),
    )
    init_process_std: float = option(0.05, "Initial sigma_x.", low=0.0, low_open=True)
    init_obs_std: float = option(0.5, "Initial sigma_y.", low=0.0, low_open=True)
    init_kernel_std: float = option(0.5, "Initial GP signal std sigma_f.", low=0.0, low_open=True)
    init_lengthscale: float = option(
        2.0,
        "Initial GP length-scales (z-scored units). Longer ones start the transitions nearly "
        "linear: 8 takes the actuator's test RMSE over 5 seeds from median 0.50 to 0.43 "
        "(mean 0.51 to 0.48; benchmarks/RESULTS.md, session 26).",
        low=0.0,
        low_open=True,
    )
    lengthscale_ladder: float = option(
        1.0,
        "Seed k of the num_seeds trained at once starts its length-scales at init_lengthscale "
        "* ladder^k (not in the paper). With 2 and 4 seeds the members start at 2, 4, 8 and "
        "16, and their mixture needs no one length-scale chosen: with clip_inputs and two "
        "models per rung (lengthscale_rungs), the actuator's test RMSE over 10 such "
        "ensembles is 0.430 against the default's 0.51 (benchmarks/RESULTS.md, session 27); "
        "ballbeam and the dryer do better without it, and the benchmark's --select-rungs "
        "chooses per record (session 29). 1: every seed starts at init_lengthscale.",
        low=0.0,
        low_open=True,
    )
    lengthscale_rungs: int = option(
        0,
        "The ladder starts again every this many seeds: seed k starts at init_lengthscale * "
        "ladder^(k mod rungs), so 8 seeds with 4 rungs give two models per rung; 0: it never "
        "starts again.",
        low=0,
    )
    init_inducing_std: float = option(
        0.01, "Initial std of q(z) (the inducing outputs).", low=0.0, low_open=True
    )
    inducing_range: float = option(
        2.0, "Inducing inputs start uniform in [-r, r]^(Dx+Du).", low=0.0, low_open=True
    )
    noise_scale: str = option(
        "std",
        "Scale of the transition noise: std (paper) or variance (authors' code).",
        choices=("std", "variance"),
    )
    shared_noise: bool = option(
        False, "One noise draw shared by all latent dimensions (authors' code)."
    )
    sample_reduction: str = option(
        "mean",
        "Log-likelihood over samples: mean (paper, eq. 19) or sum (authors' code).",
        choices=("mean", "sum"),
    )
    inducing_samples: str = option(
        "marginal",
        "z in the sampled trajectories: marginal (paper, eq. 19: q(z) integrated out at every "
        "step, independently) or trajectory (one z ~ q(z) per trajectory, the same f all "
        "along it; Ialongo et al. 2019).",
        choices=("marginal", "trajectory"),
    )
    input_lags: int = option(
        0,
        "Past inputs u_{t-1..t-L} added to each transition's input (a tapped delay line); "
        "0: the paper's f(x_{t-1}, u_{t-1}).",
        low=0,
    )
    clip_inputs: bool = option(
        False,
        "Free simulation holds each input outside the training record's range at the range's "
        "edge (not in the paper): the GPs have seen no input beyond it, and with long "
        "length-scales they extrapolate it into runaway trajectories (benchmarks/RESULTS.md, "
        "session 27). It assumes the system saturates there: on a record whose response keeps "
        "growing past the training range (the two-tank system) it costs accuracy; the "
        "benchmark's --select clip_inputs=false,true chooses it on the training half (session 28).",
    )
    eval_samples: int = option(1000, "Sampled trajectories for the free simulation.", low=1)
    eval_every: int = option(200, "Adam steps between test evaluations and checkpoints.", low=1)
    num_seeds: int = option(1, "Independent seeds trained at once (vmapped).", low=1)
    checkpoint_every: int = option(1, "Checkpoint every this many chunks.", low=1)

    def check(self):
        if self.batch_size * self.seq_len <= 0:
            raise ConfigError("batch_size and seq_len must be positive")
        if self.recognition_window > self.seq_len:
            raise ConfigError(
                f"recognition_window: must be <= seq_len ({self.seq_len}), got "
                f"{self.recognition_window}"
            )


class PRSSMParams(NamedTuple):
    zeta: jax.Array  # [Dx, P, Dx+Du] inducing inputs
    q_mu: jax.Array  # [Dx, P] mean of q(z_d)
    q_sqrt_offdiag: jax.Array  # [Dx, P, P] strictly lower part of S_d's Cholesky factor
    q_log_diag: jax.Array  # [Dx, P] log of its diagonal
    log_kernel_std: jax.Array  # [Dx]
    log_lengthscales: jax.Array  # [Dx, Dx+Du]
    log_process_std: jax.Array  # [Dx] sigma_x
    log_obs_std: jax.Array  # [Dy] sigma_y
    recognition: dict  # flax params of the recognition MLP


class Recognition(nn.Module):
    """q(x_1) = N(mean, diag(std^2)) from the first `window` steps of (y, u): [B, W*(Dy+Du)]."""

    latent_dim: int
    hidden: int

    @nn.compact
    def __call__(self, window_BF):
        h = nn.tanh(nn.Dense(self.hidden)(window_BF))
        out = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)(h)
        mean, pre_std = jnp.split(out, 2, axis=-1)
        return mean, jax.nn.softplus(pre_std - 2.0) + 1e-4


def q_sqrt(params: PRSSMParams) -> jax.Array:
    """[Dx, P, P] lower-triangular Cholesky factors of S_d (positive diagonal)."""
    P = params.q_mu.shape[-1]
    lower = jnp.tril(params.q_sqrt_offdiag, -1)
    return lower + jnp.exp(params.q_log_diag)[..., None] * jnp.eye(P)


def _gp_args(params: PRSSMParams) -> tuple:
    """(zeta, q_mu, q_sqrt, variance, lengthscales) of the D_x GPs, each with a [Dx] axis."""
    return (
        params.zeta,
        params.q_mu,
        q_sqrt(params),
        jnp.exp(2 * params.log_kernel_std),
        jnp.exp(params.log_lengthscales),
    )


def transition_gps(params: PRSSMParams, jitter: float = 1e-5) -> SparseGPCache:
    """The D_x transition GPs factorised once (leaves with a leading [Dx] axis)."""
    return jax.vmap(sparse_gp_precompute, in_axes=(0, 0, 0, 0, 0, None))(*_gp_args(params), jitter)


def transition_moments(
    gps: SparseGPCache,
    x_SX: jax.Array,
    u_SU: jax.Array,
    mean_function: str = "identity",
    weights_XSP: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mean and variance of f_t given x_{t-1}, u_{t-1}: with z marginalised under q(z_d)
    (Doerr et al. 2018, eq. (19)'s one-step marginal; the sparse GP of `sequence.gp`), or,
    given `weights_XSP`, conditioned on one z per sample (p(f_t | x_{t-1}, z) of eq. (8)).

    Args:
      gps: `transition_gps(params)`.
      x_SX: [S, Dx] states x_{t-1}; u_SU: [S, Du] inputs u_{t-1}.
      weights_XSP: None, or [Dx, S, P] K_d^{-1} z_{d,s} (`sparse_gp_sample_weights`).
    Returns:
      (mean [S, Dx], var [S, Dx]) of f_t (without process noise).
    """
    xu_SI = jnp.concatenate([x_SX, u_SU], -1)
    if weights_XSP is None:
        mean_XS, var_XS = jax.vmap(sparse_gp_predict, in_axes=(0, None))(gps, xu_SI)
    else:
        predict = jax.vmap(sparse_gp_predict_given_z, in_axes=(0, None, 0))
        mean_XS, var_XS = predict(gps, xu_SI, weights_XSP)
    mean_SX = mean_XS.T + (x_SX if mean_function == "identity" else 0.0)
    return mean_SX, var_XS.T


def sample_trajectories(
    params: PRSSMParams,
    x1_SX: jax.Array,
    u_HU: jax.Array,
    key: jax.Array,
    config: PRSSMConfig,
) -> jax.Array:
    """Sample x_{1:H} through q's Markov chain (Doerr et al. 2018, eq. (19)):
    x_t = mu_f(x_{t-1}, u_{t-1}) + sqrt(var_f + sigma_x^2) * eps_t, one `lax.scan`; with
    `config.inducing_samples == "trajectory"` each trajectory first draws its own z ~ q(z)
    and (mu_f, var_f) are those of p(f_t | x_{t-1}, z).

    Args:
      x1_SX: [S, Dx] samples of x_1; u_HU: [H, Du] inputs (u_H is not used).
      key: PRNG key.
    Returns:
      [H, S, Dx] latent trajectories (x_1 first).
    """
    S, X = x1_SX.shape
    process_var = jnp.exp(2 * params.log_process_std)
    gps = transition_gps(params)
    keys = jax.random.split(key, u_HU.shape[0] - 1)
    weights = None
    if config.inducing_samples == "trajectory":  # (the default path's draws are unchanged)
        eps_XSP = jax.random.normal(jax.random.fold_in(key, 1), (X, S, params.q_mu.shape[-1]))
        weights = jax.vmap(sparse_gp_sample_weights)(gps, eps_XSP)

    def step(x_SX, inputs):
        u_U, k = inputs
        u_SU = jnp.broadcast_to(u_U, (S, u_U.shape[-1]))
        mean, var = transition_moments(gps, x_SX, u_SU, config.mean_function, weights)
        total = var + process_var
        scale = jnp.sqrt(total) if config.noise_scale == "std" else total
        eps = jax.random.normal(k, (S, 1) if config.shared_noise else (S, X))
        x_next = mean + scale * eps
        return x_next, x_next

    _, xs = jax.lax.scan(step, x1_SX, (u_HU[:-1], keys))
    return jnp.concatenate([x1_SX[None], xs], 0)


def lagged_inputs(u_TU: jax.Array, lags: int) -> jax.Array:
    """The tapped delay line of `PRSSMConfig.input_lags` (not in the paper: a wider input to
    eq. (8)'s transition f): [T, Du] -> [T, Du (lags + 1)], row t holding (u_t, u_{t-1}, ...,
    u_{t-lags}), with u_1 standing in for the steps before the record; lags = 0 returns u_TU
    itself."""
    if lags == 0:
        return u_TU
    T = u_TU.shape[0]
    idx = jnp.clip(jnp.arange(T)[:, None] - jnp.arange(lags + 1)[None], 0, None)
    return u_TU[idx].reshape(T, -1)


def recognition_input(y_BWY: jax.Array, u_BWU: jax.Array) -> jax.Array:
    """The recognition model's input: [B, W*(Dy+Du)] from the first W steps."""
    B = y_BWY.shape[0]
    return jnp.concatenate([y_BWY, u_BWU], -1).reshape(B, -1)


def gaussian_kl_to_standard(mean: jax.Array, std: jax.Array) -> jax.Array:
    """KL(N(mean, diag(std^2)) || N(0, I)), summed over the last axis."""
    return 0.5 * jnp.sum(std**2 + mean**2 - 1.0 - 2.0 * jnp.log(std), -1)


def elbo_terms(
    params: PRSSMParams,
    y_BHY: jax.Array,
    u_BHU: jax.Array,
    key: jax.Array,
    config: PRSSMConfig,
    data_scale: float,
    jitter: float = 1e-5,
) -> dict[str, jax.Array]:
    """The ELBO of eq. (17) estimated by eq. (19) on a minibatch of sub-trajectories.

    Args:
      y_BHY: [B, H, Dy] outputs, u_BHU: [B, H, Du] inputs (normalised).
      data_scale: T_train / (B H): scales the data term and q(x_1)'s KL to the record.
    Returns:
      dict with elbo, loglik (scaled), kl_z, kl_x1 (scaled): scalars.
    """
    S, X = config.num_samples, config.latent_dim
    W = config.recognition_window
    if y_BHY.ndim != 3 or u_BHU.shape[:-1] != y_BHY.shape[:-1] or y_BHY.shape[1] < W:
        raise ValueError(
            f"y_BHY, u_BHU: must be [B, H, Dy] and [B, H, Du] with H >= recognition_window "
            f"({W}), got {y_BHY.shape} and {u_BHU.shape}"
        )
    B, H, Y = y_BHY.shape
    recog = Recognition(X, config.recognition_hidden)
    mean_BX, std_BX = recog.apply(
        {"params": params.recognition}, recognition_input(y_BHY[:, :W], u_BHU[:, :W])
    )
    k_x1, k_traj = jax.random.split(key)
    eps = jax.random.normal(k_x1, (B, S, X))
    x1_BSX = mean_BX[:, None] + std_BX[:, None] * eps
    x_BHSX = jax.vmap(sample_trajectories, in_axes=(None, 0, 0, 0, None))(
        params, x1_BSX, u_BHU, jax.random.split(k_traj, B), config
    )
    obs_var = jnp.exp(2 * params.log_obs_std)
    err = y_BHY[:, :, None, :] - x_BHSX[..., :Y]
    logp_BHS = -0.5 * jnp.sum(LOG_2PI + jnp.log(obs_var) + err**2 / obs_var, -1)
    reduce = jnp.mean if config.sample_reduction == "mean" else jnp.sum
    loglik = data_scale * jnp.sum(reduce(logp_BHS, -1))
    kl_x1 = data_scale * jnp.sum(gaussian_kl_to_standard(mean_BX, std_BX))
    kl_z = jnp.sum(jax.vmap(_kl_z, in_axes=(0, 0, 0, 0, 0, None))(*_gp_args(params), jitter))
    return dict(elbo=loglik - kl_z - kl_x1, loglik=loglik, kl_z=kl_z, kl_x1=kl_x1)


def _kl_z(zeta_PI, q_mu_P, q_sqrt_PP, variance, lengthscales_I, jitter):
    K = se_kernel(zeta_PI, zeta_PI, variance, lengthscales_I)
    K = K + jitter * variance * jnp.eye(K.shape[0])
    return gauss_kl(q_mu_P, q_sqrt_PP, K)


def free_simulation(
    params: PRSSMParams,
    u_TU: jax.Array,
    y_window_WY: jax.Array,
    key: jax.Array,
    config: PRSSMConfig,
    num_samples: int,
) -> tuple[jax.Array, jax.Array]:
    """Predict y_{1:T} from u_{1:T} alone after q(x_1) is inferred from the first W steps
    (the free simulation of the paper's benchmark experiments and Figure 4).

    Args:
      u_TU: [T, Du] inputs; y_window_WY: [W, Dy] the first W measured outputs.
    Returns:
      (mean [T, Dy], var [T, Dy]) of the predictive distribution of y (normalised units;
      the variance includes sigma_y^2).
    """
    W = config.recognition_window
    Y = y_window_WY.shape[-1]
    if y_window_WY.ndim != 2 or y_window_WY.shape[0] != W or u_TU.ndim != 2 or len(u_TU) < W:
        raise ValueError(
            f"y_window_WY: must be [recognition_window = {W}, Dy] and u_TU [T >= {W}, Du], got "
            f"{y_window_WY.shape} and {u_TU.shape}"
        )
    recog = Recognition(config.latent_dim, config.recognition_hidden)
    mean_1X, std_1X = recog.apply(
        {"params": params.recognition}, recognition_input(y_window_WY[None], u_TU[None, :W])
    )
    k1, k2 = jax.random.split(key)
    x1_SX = mean_1X + std_1X * jax.random.normal(k1, (num_samples, config.latent_dim))
    x_TSX = sample_trajectories(params, x1_SX, u_TU, k2, config)
    y_TSY = x_TSX[..., :Y]
    return y_TSY.mean(1), y_TSY.var(1) + jnp.exp(2 * params.log_obs_std)


def ladder_rung(member: jax.Array | int, config: PRSSMConfig) -> jax.Array | int:
    """Seed `member`'s rung on the length-scale ladder (not in the paper): member itself, or
    member mod lengthscale_rungs when that is set; an int, or a traced [] int under vmap."""
    return member % config.lengthscale_rungs if config.lengthscale_rungs else member


def init_params(
    key: jax.Array, config: PRSSMConfig, Du: int, Dy: int, member: jax.Array | int = 0
) -> PRSSMParams:
    """Initial parameters (the initialisation of the authors' benchmark script).

    `member` (an int, or a traced [] int under vmap over seeds) is the seed's index among the
    `num_seeds` trained at once: its length-scales start at init_lengthscale *
    lengthscale_ladder^member (member mod lengthscale_rungs when that is set). Shapes: zeta
    [Dx, P, Dx + Du], q_mu [Dx, P], q_sqrt_offdiag [Dx, P, P], lengthscales [Dx, Dx + Du]."""
    X, P = config.latent_dim, config.num_inducing
    k_zeta, k_recog = jax.random.split(key)
    r = config.inducing_range
    rung = ladder_rung(member, config)
    recog = Recognition(X, config.recognition_hidden)
    window = jnp.zeros((1, config.recognition_window * (Dy + Du)))
    return PRSSMParams(
        zeta=jax.random.uniform(k_zeta, (X, P, X + Du), minval=-r, maxval=r),
        q_mu=jnp.zeros((X, P)),
        q_sqrt_offdiag=jnp.zeros((X, P, P)),
        q_log_diag=jnp.full((X, P), math.log(config.init_inducing_std)),
        log_kernel_std=jnp.full((X,), math.log(config.init_kernel_std)),
        log_lengthscales=jnp.full(
            (X, X + Du),
            math.log(config.init_lengthscale) + rung * math.log(config.lengthscale_ladder),
            jnp.float32,
        ),
        log_process_std=jnp.full((X,), math.log(config.init_process_std)),
        log_obs_std=jnp.full((Dy,), math.log(config.init_obs_std)),
        recognition=recog.init(k_recog, window)["params"],
    )


def unused_ladder(config: PRSSMConfig) -> str | None:
    """Why `config`'s length-scale ladder changes no seed's start, or None when it does (or
    when none is asked for): a ladder with one seed, or with lengthscale_rungs 1, starts
    every seed at rung 0; rungs with a ladder of 1 start every rung at init_lengthscale."""
    ladder, rungs, seeds = config.lengthscale_ladder, config.lengthscale_rungs, config.num_seeds
    if ladder != 1.0 and {ladder_rung(k, config) for k in range(seeds)} == {0}:
        return (
            f"lengthscale_ladder={ladder} has no effect with num_seeds={seeds} and "
            f"lengthscale_rungs={rungs}: every seed starts at init_lengthscale; the ladder "
            "needs num_seeds >= 2 and lengthscale_rungs 0 or >= 2"
        )
    if rungs and ladder == 1.0:
        return (
            f"lengthscale_rungs={rungs} has no effect with lengthscale_ladder=1.0: every rung "
            "starts at init_lengthscale; set lengthscale_ladder (e.g. 2.0) to use the rungs"
        )
    return None


class TrainState(NamedTuple):
    params: PRSSMParams
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array  # [] int32


class PRSSMTrainer(NamedTuple):
    """Pure functions of one seed (vmap them over seeds); data are closed-over constants."""

    config: PRSSMConfig
    init: callable  # (key, member index = 0) -> TrainState
    train_chunk: callable  # (TrainState, num_steps static) -> (TrainState, metrics [n])
    predict: callable  # (params, u_TU, y_window_WY, key) -> (mean, var), normalised
    optimizer: optax.GradientTransformation


def make_prssm_trainer(config: PRSSMConfig, u_train_TU: np.ndarray, y_train_TY: np.ndarray):
    """Build init / train_chunk / predict for PR-SSM on a normalised training record.

    Args:
      config: PRSSMConfig (validated).
      u_train_TU: [T, Du], y_train_TY: [T, Dy] normalised training data. `predict` takes
        inputs [T', Du] too: both are widened by `lagged_inputs` inside, and with
        `clip_inputs` its inputs are first clipped to u_train_TU's per-column range.
    """
    u_low_U, u_high_U = np.min(u_train_TU, 0), np.max(u_train_TU, 0)
    u_train_TU = lagged_inputs(jnp.asarray(u_train_TU, jnp.float32), config.input_lags)
    T, Du = u_train_TU.shape
    Dy = y_train_TY.shape[1]
    if config.latent_dim < Dy:
        raise ConfigError(
            f"latent_dim: must be >= the number of outputs ({Dy}), got {config.latent_dim}"
        )
    if config.seq_len > T:
        raise ConfigError(f"seq_len: must be <= the training length ({T}), got {config.seq_len}")
    u_all = jnp.asarray(u_train_TU, jnp.float32)
    y_all = jnp.asarray(y_train_TY, jnp.float32)
    H, B = config.seq_len, config.batch_size
    data_scale = T / (B * H)
    lr = config.learning_rate
    if config.lr_schedule == "cosine":
        lr = optax.cosine_decay_schedule(config.learning_rate, config.iterations)
    optimizer = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))

    def init(key, member=0):
        k_params, k_run = jax.random.split(key)
        params = init_params(k_params, config, Du, Dy, member)
        return TrainState(params, optimizer.init(params), k_run, jnp.zeros((), jnp.int32))

    def loss_fn(params, y_BHY, u_BHU, key):
        terms = elbo_terms(params, y_BHY, u_BHU, key, config, data_scale)
        return -terms["elbo"] / T, terms

    def one_step(state, _):
        key, k_starts, k_elbo = jax.random.split(state.key, 3)
        starts = jax.random.randint(k_starts, (B,), 0, T - H + 1)
        idx = starts[:, None] + jnp.arange(H)[None]
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, y_all[idx], u_all[idx], k_elbo
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(loss=loss, **{k: v / T for k, v in terms.items()})
        return TrainState(params, opt_state, key, state.step + 1), metrics

    def train_chunk(state, num_steps):
        return jax.lax.scan(one_step, state, None, length=num_steps)

    def predict(params, u_TU, y_window_WY, key):
        if config.clip_inputs:
            u_TU = jnp.clip(u_TU, u_low_U, u_high_U)
        u_TU = lagged_inputs(u_TU, config.input_lags)
        return free_simulation(params, u_TU, y_window_WY, key, config, config.eval_samples)

    return PRSSMTrainer(config, init, train_chunk, predict, optimizer)
