"""DDPM primitives: noise schedules as a pytree of arrays, the forward process q(x_t | x_0),
the simplified training loss, ancestral sampling and the strided deterministic sampler.

Single file, imports only jax: copy it into your own repo. `eps_fn(x_t, t) -> eps_hat` is
any noise-prediction function (a network with its parameters closed over); `t` is an int32
array of timesteps in 1..T, one per example. Time is 1-indexed as in the paper: arrays of a
schedule hold index 0 for t = 1.

Papers: Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models" (eqs. (4), (6),
(7), (11), (14), Algorithms 1 and 2); Nichol & Dhariwal 2021 (the cosine schedule, eq. 17);
Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models" (eq. (12), the strided
sampler); Salimans & Ho 2022, "Progressive Distillation for Fast Sampling of Diffusion
Models" (the v parameterisation); Ho & Salimans 2022, "Classifier-Free Diffusion Guidance"
(eq. (6)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Schedule(NamedTuple):
    """Every per-timestep quantity, each [T] (index i is timestep t = i + 1)."""

    betas: jax.Array
    alphas: jax.Array  # 1 - beta_t
    alpha_bars: jax.Array  # prod_{s <= t} alpha_s
    alpha_bars_prev: jax.Array  # alpha-bar_{t-1}, with alpha-bar_0 = 1
    posterior_variance: jax.Array  # beta-tilde_t, eq. (7)
    posterior_mean_coef_x0: jax.Array  # eq. (7): coefficient of x_0
    posterior_mean_coef_xt: jax.Array  # eq. (7): coefficient of x_t

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]


def schedule_from_betas(betas_T) -> Schedule:
    """All quantities of Ho et al. 2020, eqs. (4) and (7), from beta_1..beta_T: [T].

    Computed in float64 with NumPy (1 - alpha-bar_t is tiny for small t) and stored as
    float32 arrays; build schedules outside `jit`.
    """
    betas = np.asarray(betas_T, np.float64)
    if betas.ndim != 1 or betas.shape[0] < 1:
        raise ValueError(f"betas_T: must be a non-empty [T] array, got shape {betas.shape}")
    if not np.all((betas > 0) & (betas < 1)):
        raise ValueError("betas_T: every beta_t must be in (0, 1)")
    alphas = 1.0 - betas
    alpha_bars = np.cumprod(alphas)
    prev = np.concatenate([[1.0], alpha_bars[:-1]])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return Schedule(
        betas=f32(betas),
        alphas=f32(alphas),
        alpha_bars=f32(alpha_bars),
        alpha_bars_prev=f32(prev),
        posterior_variance=f32(betas * (1.0 - prev) / (1.0 - alpha_bars)),
        posterior_mean_coef_x0=f32(np.sqrt(prev) * betas / (1.0 - alpha_bars)),
        posterior_mean_coef_xt=f32(np.sqrt(alphas) * (1.0 - prev) / (1.0 - alpha_bars)),
    )


def linear_schedule(num_steps: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02) -> Schedule:
    """The paper's schedule: beta_t linear from beta_1 to beta_T (Ho et al. 2020, Sec. 4)."""
    if num_steps < 1:
        raise ValueError(f"num_steps: must be >= 1, got {num_steps}")
    if not 0 < beta_1 <= beta_T < 1:
        raise ValueError(f"beta_1, beta_T: need 0 < beta_1 <= beta_T < 1, got {beta_1}, {beta_T}")
    return schedule_from_betas(np.linspace(beta_1, beta_T, num_steps))


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """alpha-bar_t = f(t) / f(0), f(t) = cos(((t/T + s) / (1 + s)) pi/2)^2, betas clipped at
    max_beta (Nichol & Dhariwal 2021, eq. 17)."""
    if num_steps < 1:
        raise ValueError(f"num_steps: must be >= 1, got {num_steps}")
    t = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    f = np.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bars = f / f[0]
    betas = np.clip(1.0 - alpha_bars[1:] / alpha_bars[:-1], 1e-12, max_beta)
    return schedule_from_betas(betas)


def _at(values_T: jax.Array, t_B: jax.Array, x: jax.Array) -> jax.Array:
    """values[t - 1] per example, shaped to broadcast against x [B, ...]. Concrete
    timesteps outside 1..T raise (indexing would wrap t = 0 to T, or clip t > T); traced
    ones, inside the caller's jit, are not checked."""
    if not isinstance(t_B, jax.core.Tracer):
        t = np.asarray(t_B)
        T = values_T.shape[0]
        if t.size and (t.min() < 1 or t.max() > T):
            raise ValueError(f"t_B: timesteps must be in 1..T = {T}, got {t.min()}..{t.max()}")
    v = values_T[t_B - 1]
    return v.reshape(v.shape + (1,) * (x.ndim - 1))


def q_sample(schedule: Schedule, x0: jax.Array, t_B: jax.Array, eps: jax.Array) -> jax.Array:
    """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps (Ho et al. 2020, eq. (4)).

    Args:
      x0: [B, ...] data; t_B: [B] int timesteps in 1..T; eps: [B, ...] standard normal.
    Returns:
      [B, ...] x_t.
    """
    if x0.shape != eps.shape or t_B.shape != x0.shape[:1]:
        raise ValueError(
            f"q_sample: x0 and eps must have the same shape [B, ...] and t_B [B], got "
            f"{x0.shape}, {eps.shape}, {t_B.shape}"
        )
    ab = _at(schedule.alpha_bars, t_B, x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * eps


PREDICTIONS = ("eps", "v")


def v_target(schedule: Schedule, x0: jax.Array, t_B: jax.Array, eps: jax.Array) -> jax.Array:
    """v = sqrt(alpha-bar_t) eps - sqrt(1 - alpha-bar_t) x_0, the "velocity" target of
    Salimans & Ho 2022 (Sec. 4 and App. D): x0 [B, ...], t_B [B], eps [B, ...] -> [B, ...]."""
    ab = _at(schedule.alpha_bars, t_B, x0)
    return jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0


def eps_from_v(schedule: Schedule, x_t: jax.Array, t_B: jax.Array, v: jax.Array) -> jax.Array:
    """eps = sqrt(1 - alpha-bar_t) x_t + sqrt(alpha-bar_t) v, the noise that a v-prediction
    [B, ...] implies at x_t [B, ...] (Salimans & Ho 2022, App. D; with x_t from eq. (4) and v
    from `v_target` it is exact). The samplers take eps_fn, so a v-network is wrapped by this.
    Its x0-hat, sqrt(alpha-bar_t) x_t - sqrt(1 - alpha-bar_t) v, does not divide the network's
    error by sqrt(alpha-bar_t) as eps-prediction's does at high noise."""
    ab = _at(schedule.alpha_bars, t_B, x_t)
    return jnp.sqrt(1.0 - ab) * x_t + jnp.sqrt(ab) * v


def simple_loss(
    eps_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: Schedule,
    x0: jax.Array,
    key: jax.Array,
    min_snr_gamma: float | None = None,
    prediction: str = "eps",
) -> jax.Array:
    """L_simple = E_{t, eps} ||eps - eps_theta(x_t, t)||^2 with t ~ U{1..T} (Ho et al. 2020,
    eq. (14), Algorithm 1), averaged over the batch and the data dimensions.

    With `min_snr_gamma` = gamma, each example's error is weighted by min(SNR_t, gamma) /
    SNR_t, SNR_t = alpha-bar_t / (1 - alpha-bar_t): the Min-SNR-gamma weighting of Hang et
    al. 2023 (Sec. 3.4) for the eps parameterisation, which down-weights the easy low-noise
    steps (weight 1 wherever SNR_t <= gamma). None: the paper's uniform weights.

    prediction="v" is for a network that outputs v (`v_target`; eps_fn then wraps it with
    `eps_from_v`): since v - v_hat = (eps - eps_hat) / sqrt(alpha-bar_t), the uniform weights
    become 1 / alpha-bar_t = (SNR_t + 1) / SNR_t, i.e. the mean ||v - v_hat||^2 of Salimans &
    Ho 2022, and Hang et al.'s Min-SNR weights for v, min(SNR_t, gamma) / (SNR_t + 1) on the v
    error, equal the eps weights above on the eps error: one objective, two outputs.

    Args:
      eps_fn: (x_t [B, ...], t [B]) -> eps_hat [B, ...].
      x0: [B, ...] data batch.
      prediction: "eps" or "v", what the network behind eps_fn outputs.
    Returns:
      [] the loss.
    """
    if min_snr_gamma is not None and not min_snr_gamma > 0:
        raise ValueError(f"min_snr_gamma: must be > 0 or None, got {min_snr_gamma}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction: must be one of {PREDICTIONS}, got {prediction!r}")
    k_t, k_eps = jax.random.split(key)
    t = jax.random.randint(k_t, x0.shape[:1], 1, schedule.num_steps + 1)
    eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
    err = (eps - eps_fn(q_sample(schedule, x0, t, eps), t)) ** 2
    if min_snr_gamma is None and prediction == "eps":
        return jnp.mean(err)
    ab = _at(schedule.alpha_bars, t, x0)
    if min_snr_gamma is None:
        return jnp.mean(err / ab)
    snr = ab / (1.0 - ab)
    return jnp.mean(jnp.minimum(snr, min_snr_gamma) / snr * err)


def classifier_free_guidance(
    eps_fn_y: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    y_B: jax.Array,
    null_label: int,
    guidance: float,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """eps~(x_t, t) = (1 + w) eps_theta(x_t, t, y) - w eps_theta(x_t, t, null) (Ho & Salimans
    2022, eq. (6)), an eps_fn for the samplers: w = 0 is the conditional model alone, w > 0
    moves each step away from the unconditional prediction, toward samples the implicit
    classifier p(y | x_t) finds more typical of y.

    Args:
      eps_fn_y: (x_t [B, ...], t [B], y [B]) -> eps_hat [B, ...], a network trained with its
        labels replaced by `null_label` some of the time.
      y_B: [B] int labels of the samples.
      guidance: w >= 0 (a Python number: at 0 the unconditional pass is skipped).
    Returns:
      (x_t [B, ...], t [B]) -> eps~ [B, ...]; both passes run as one batch of 2B.
    """
    if not guidance >= 0:
        raise ValueError(f"guidance: must be >= 0 (0: the conditional model alone), got {guidance}")
    if guidance == 0:
        return lambda x, t: eps_fn_y(x, t, y_B)

    def eps_fn(x, t):
        if x.shape[:1] != y_B.shape:
            raise ValueError(f"y_B: must be [B] = [{x.shape[0]}], got {y_B.shape}")
        null = jnp.full_like(y_B, null_label)
        both = eps_fn_y(
            jnp.concatenate([x, x]), jnp.concatenate([t, t]), jnp.concatenate([y_B, null])
        )
        cond, uncond = jnp.split(both, 2)
        return (1.0 + guidance) * cond - guidance * uncond

    return eps_fn


def predict_x0(schedule: Schedule, x_t: jax.Array, t_B: jax.Array, eps: jax.Array) -> jax.Array:
    """x_0 = (x_t - sqrt(1 - alpha-bar_t) eps) / sqrt(alpha-bar_t), eq. (4) solved for x_0."""
    ab = _at(schedule.alpha_bars, t_B, x_t)
    return (x_t - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def posterior_mean(schedule: Schedule, x0: jax.Array, x_t: jax.Array, t_B: jax.Array) -> jax.Array:
    """mu-tilde_t(x_t, x_0), the mean of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. (7))."""
    return (
        _at(schedule.posterior_mean_coef_x0, t_B, x_t) * x0
        + _at(schedule.posterior_mean_coef_xt, t_B, x_t) * x_t
    )


ANCESTRAL_SIGMAS = ("beta", "posterior")


def ancestral_sample(
    eps_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: Schedule,
    shape: tuple[int, ...],
    key: jax.Array,
    sigma: str = "beta",
    clip_x0: float | None = None,
) -> jax.Array:
    """Algorithm 2 of Ho et al. 2020 as one `lax.scan` over t = T..1:
    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha-bar_t) eps_theta(x_t, t)) / sqrt(alpha_t)
              + sigma_t z,  z ~ N(0, I) for t > 1, z = 0 at t = 1 (eq. (11)).

    Args:
      eps_fn: (x_t [B, ...], t [B]) -> eps_hat.
      shape: (B, ...) of the samples.
      sigma: "beta" (sigma_t^2 = beta_t) or "posterior" (sigma_t^2 = beta-tilde_t), the
        paper's two choices (Sec. 3.2).
      clip_x0: if set, the mean is computed from x_0-hat clipped to [-clip_x0, clip_x0]
        (eq. (7) with the clipped x_0; the paper's released sampler clips at 1); None follows
        eq. (11) exactly.
    Returns:
      [B, ...] samples x_0.
    """
    if sigma not in ANCESTRAL_SIGMAS:
        raise ValueError(f"sigma: must be one of {ANCESTRAL_SIGMAS}, got {sigma!r}")
    variances = schedule.betas if sigma == "beta" else schedule.posterior_variance
    k_init, k_loop = jax.random.split(key)
    x_T = jax.random.normal(k_init, shape)
    B = shape[0]

    def step(x, inputs):
        t, k = inputs
        t_B = jnp.full((B,), t, jnp.int32)
        eps = eps_fn(x, t_B)
        if clip_x0 is None:
            mean = (
                x
                - _at(schedule.betas, t_B, x)
                / jnp.sqrt(1.0 - _at(schedule.alpha_bars, t_B, x))
                * eps
            ) / jnp.sqrt(_at(schedule.alphas, t_B, x))
        else:
            x0 = jnp.clip(predict_x0(schedule, x, t_B, eps), -clip_x0, clip_x0)
            mean = posterior_mean(schedule, x0, x, t_B)
        noise = jax.random.normal(k, x.shape) * jnp.sqrt(variances[t - 1])
        return mean + jnp.where(t > 1, 1.0, 0.0) * noise, None

    T = schedule.num_steps
    ts = jnp.arange(T, 0, -1, dtype=jnp.int32)
    x0, _ = jax.lax.scan(step, x_T, (ts, jax.random.split(k_loop, T)))
    return x0


DDIM_SPACINGS = ("uniform", "quadratic", "leading")


def ddim_timesteps(num_steps: int, num_sample_steps: int, spacing: str = "uniform") -> jax.Array:
    """The strided sub-sequence tau of 1..T used by `ddim_sample`, strictly increasing:
    [num_sample_steps] int32 (Song et al. 2021, Sec. 4.2 and App. D.2).
    "uniform": tau_i = round(i T / S), ending at T, so that x_T ~ N(0, I) holds exactly.
    "quadratic": tau_i = 1 + round((T - 1) (i / S)^2), raised where needed to stay strictly
    increasing, so that the steps are short near the data (Song et al. use it on CIFAR10; they
    end it at 0.8 T, this one at T). "leading": tau_i = 1 + floor((i - 1) T / S), i.e. 1, 21,
    ..., 981 for T = 1000 and S = 50, the sub-sequence of Song et al.'s released sampler
    (`range(0, T, T // S)`, 0-based): it ends below T (at T - T / S + 1 where S divides T)
    and takes x_T ~ N(0, I) as x_{tau_S}. Where alpha-bar_T is near 0 (the cosine schedule's
    is 2.4e-9), the eps-network's x0-hat at t = T is (x - sqrt(1 - ab) eps_hat) / sqrt(ab),
    the network's error magnified 2e4 times, and a first step from T makes that (clipped)
    x0-hat the whole signal of x_{tau_{S-1}}; "leading" skips t = T."""
    if not 1 <= num_sample_steps <= num_steps:
        raise ValueError(
            f"num_sample_steps: must be in [1, {num_steps}] (the schedule's T), got "
            f"{num_sample_steps}"
        )
    if spacing not in DDIM_SPACINGS:
        raise ValueError(f"spacing: must be one of {DDIM_SPACINGS}, got {spacing!r}")
    i = np.arange(1, num_sample_steps + 1)
    if spacing == "uniform":
        taus = np.round(i * num_steps / num_sample_steps)
    elif spacing == "leading":
        taus = 1 + np.floor((i - 1) * num_steps / num_sample_steps)
    else:
        taus = 1 + np.round((num_steps - 1) * (i / num_sample_steps) ** 2)
        # strictly increasing: tau_i >= tau_{i-1} + 1, i.e. tau_i - i non-decreasing; the last
        # stays T (tests/test_ddpm.py checks every S <= T <= 120)
        taus = np.maximum.accumulate(taus - i) + i
    return jnp.asarray(taus.astype(np.int32))


def ddim_sample(
    eps_fn: Callable[[jax.Array, jax.Array], jax.Array],
    schedule: Schedule,
    shape: tuple[int, ...],
    key: jax.Array,
    num_sample_steps: int = 50,
    eta: float = 0.0,
    clip_x0: float | None = None,
    spacing: str = "uniform",
    rederive_eps: bool = True,
) -> jax.Array:
    """The strided sampler of Song et al. 2021, eq. (12), over tau_S > ... > tau_1:
    x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z,
    sigma = eta sqrt((1 - ab_prev) / (1 - ab) (1 - ab / ab_prev)); eta = 0 is deterministic
    given x_T. With num_sample_steps = T and eta = 1 it is DDPM's ancestral sampler with
    sigma_t^2 = beta-tilde_t. One `lax.scan`; num_sample_steps network calls instead of T.

    Args:
      eps_fn: (x_t [B, ...], t [B]) -> eps_hat.
      shape: (B, ...) of the samples.
      num_sample_steps: S, the number of network calls.
      eta: 0 (DDIM) to 1 (DDPM-like stochasticity).
      clip_x0: optional clipping of x0_hat to [-clip_x0, clip_x0].
      spacing: "uniform", "quadratic" or "leading" sub-sequence tau (`ddim_timesteps`).
      rederive_eps: with clip_x0, whether the direction term uses the eps that the clipped
        x0_hat implies, (x - sqrt(ab) x0_hat) / sqrt(1 - ab) (GLIDE's choice, diffusers'
        `use_clipped_model_output=True`; the default), or the network's own eps_hat
        (diffusers' default). Song et al.'s sampler does not clip, so eq. (12) settles
        neither. On MNIST-5k (benchmarks/RESULTS.md, sessions 19-20) False gave the better FD
        at 50 steps on one eps network and the worse on another, and a far worse one at 200
        steps (the clipped x0 and the unclipped eps disagree at every step, and the error
        grows with the steps).
    Returns:
      [B, ...] samples x_0.
    """
    if isinstance(eta, int | float) and not 0.0 <= eta <= 1.0:  # a traced eta is not checked
        raise ValueError(f"eta: must be in [0, 1] (0: DDIM, 1: DDPM-like), got {eta}")
    taus = ddim_timesteps(schedule.num_steps, num_sample_steps, spacing)
    prev = jnp.concatenate([jnp.zeros((1,), jnp.int32), taus[:-1]])
    k_init, k_loop = jax.random.split(key)
    x_T = jax.random.normal(k_init, shape)
    B = shape[0]
    ab_all = jnp.concatenate([jnp.ones((1,)), schedule.alpha_bars])  # index t: alpha-bar_t

    def step(x, inputs):
        t, t_prev, k = inputs
        t_B = jnp.full((B,), t, jnp.int32)
        eps = eps_fn(x, t_B)
        ab, ab_prev = ab_all[t], ab_all[t_prev]
        x0 = predict_x0(schedule, x, t_B, eps)
        if clip_x0 is not None:
            x0 = jnp.clip(x0, -clip_x0, clip_x0)
            if rederive_eps:
                eps = (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)
        sigma = eta * jnp.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))
        direction = jnp.sqrt(jnp.maximum(1.0 - ab_prev - sigma**2, 0.0)) * eps
        x_prev = jnp.sqrt(ab_prev) * x0 + direction + sigma * jax.random.normal(k, x.shape)
        return x_prev, None

    S = taus.shape[0]
    xs = (taus[::-1], prev[::-1], jax.random.split(k_loop, S))
    x0, _ = jax.lax.scan(step, x_T, xs)
    return x0
