"""DreamerV3's robustness primitives: symlog, two-hot regression, KL balancing, return scale.

Vendorable: imports only jax, chex and numpy.

Paper: Hafner, Pasukonis, Ba, Lillicrap 2023, "Mastering Diverse Domains through World
Models" (DreamerV3, arXiv:2301.04104v1). Equation numbers are those of v1:
  * eq. (4): the world-model loss  L = beta_pred L_pred + beta_dyn L_dyn + beta_rep L_rep,
    with KL balancing and free bits in L_dyn = max(1, KL[sg(q) || p]) and
    L_rep = max(1, KL[q || sg(p)]) (`kl_balancing_losses`);
  * Section "Critic learning": the lambda-return targets (`rlax_zoo.multistep.lambda_returns`)
    and the critic's discrete regression;
  * eq. (11): the actor's loss, advantages divided by max(1, S) with S the EMA of the range
    from the 5th to the 95th percentile of the returns (`return_range_update`,
    `dreamer_actor_loss`);
  * Section "Robust predictions": symlog(x) = sign(x) ln(|x| + 1) and its inverse symexp,
    and two-hot regression over bins spaced evenly in symlog space
    (`twohot`, `twohot_loss`, `twohot_mean`);
  * Section "World model learning": categorical latents mixed with 1% uniform ("unimix",
    `unimix_logits`) and sampled with straight-through gradients
    (`straight_through_sample`).

Conventions (rlax's): single examples with leading batch axes allowed everywhere; logits on
the last axis; no reduction over batch axes, so callers average or sum as they wish.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

Array = chex.Array


@jax.custom_jvp
def symlog(x: Array) -> Array:
    """symlog(x) = sign(x) ln(|x| + 1) (DreamerV3, "Robust predictions"). Any shape.
    Its derivative is 1 / (1 + |x|), also at 0 (sign's zero derivative would give 0 there)."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


@symlog.defjvp
def _symlog_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return symlog(x), t / (1.0 + jnp.abs(x))


@jax.custom_jvp
def symexp(x: Array) -> Array:
    """symexp(x) = sign(x) (exp(|x|) - 1), the inverse of symlog. Any shape. Its derivative
    is exp(|x|), also at 0."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


@symexp.defjvp
def _symexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return symexp(x), t * jnp.exp(jnp.abs(x))


def symlog_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> np.ndarray:
    """The [num_bins] bin positions of two-hot regression, evenly spaced in symlog space from
    `low` to `high` (DreamerV3: 255 bins over [-20, 20], so symexp reaches about +-4.9e8)."""
    if num_bins < 2:
        raise ValueError(f"num_bins: must be >= 2, got {num_bins}")
    if not low < high:
        raise ValueError(f"low, high: need low < high, got {low}, {high}")
    return np.linspace(low, high, num_bins, dtype=np.float32)


def twohot(y: Array, bins: Array) -> Array:
    """Two-hot encoding of y over `bins` (DreamerV3, "Robust predictions").

    With b_k <= y < b_{k+1}: weight |b_{k+1} - y| / |b_{k+1} - b_k| on bin k and the rest on
    bin k + 1, so that sum_i twohot(y)_i b_i = y. y outside [b_0, b_{K-1}] is clipped to it.

    Args:
      y: [...] values (already in the bins' space; DreamerV3 encodes symlog(target)).
      bins: [K] increasing bin positions.
    Returns:
      [..., K] weights summing to 1.
    """
    chex.assert_rank(bins, 1)
    bins = jnp.asarray(bins, jnp.float32)
    y = jnp.clip(jnp.asarray(y, jnp.float32), bins[0], bins[-1])
    k = jnp.clip(jnp.searchsorted(bins, y, side="right") - 1, 0, bins.shape[0] - 2)
    lo, hi = bins[k], bins[k + 1]
    w_hi = (y - lo) / (hi - lo)
    num = bins.shape[0]
    return (
        jax.nn.one_hot(k, num) * (1.0 - w_hi)[..., None]
        + jax.nn.one_hot(k + 1, num) * w_hi[..., None]
    )


def twohot_mean(logits: Array, bins: Array) -> Array:
    """The prediction of a two-hot head: symexp(softmax(logits) . bins) (DreamerV3,
    "Robust predictions"). logits [..., K], bins [K] -> [...]."""
    chex.assert_axis_dimension(logits, -1, np.shape(bins)[0])
    probs = jax.nn.softmax(logits, axis=-1)
    return symexp(jnp.sum(probs * jnp.asarray(bins, probs.dtype), axis=-1))


def twohot_loss(logits: Array, target: Array, bins: Array) -> Array:
    """Two-hot cross-entropy  -twohot(symlog(target))^T log softmax(logits) (DreamerV3,
    "Robust predictions"), the loss of the reward and critic heads. The target carries no
    gradient. logits [..., K], target [...], bins [K] -> [...]."""
    chex.assert_axis_dimension(logits, -1, np.shape(bins)[0])
    weights = twohot(symlog(jax.lax.stop_gradient(target)), bins)
    return -jnp.sum(weights * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def unimix_logits(logits: Array, mix: float = 0.01) -> Array:
    """Log-probabilities of (1 - mix) softmax(logits) + mix / C (DreamerV3's "unimix": 1%
    uniform in every categorical, latent or policy). logits [..., C] -> [..., C]."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix: must be in [0, 1], got {mix}")
    probs = jax.nn.softmax(logits, axis=-1)
    probs = (1.0 - mix) * probs + mix / logits.shape[-1]
    return jnp.log(probs)


def straight_through_sample(key: chex.PRNGKey, logits: Array) -> Array:
    """A one-hot sample of each categorical with straight-through gradients (Bengio et al.
    2013; DreamerV2/V3): onehot + p - sg(p). logits [..., C] -> [..., C] float32."""
    sample = jax.random.categorical(key, logits, axis=-1)
    onehot = jax.nn.one_hot(sample, logits.shape[-1], dtype=jnp.float32)
    probs = jax.nn.softmax(logits, axis=-1)
    return onehot + probs - jax.lax.stop_gradient(probs)


def categorical_kl(p_logits: Array, q_logits: Array) -> Array:
    """KL[p || q] of independent categoricals, summed over groups: logits [..., G, C] -> [...].
    Both are normalised here (log_softmax), so unimix log-probabilities may be passed."""
    chex.assert_equal_shape([p_logits, q_logits])
    log_p = jax.nn.log_softmax(p_logits, axis=-1)
    log_q = jax.nn.log_softmax(q_logits, axis=-1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=(-2, -1))


def kl_balancing_losses(
    posterior_logits: Array, prior_logits: Array, free_nats: float = 1.0
) -> tuple[Array, Array]:
    """DreamerV3's dynamics and representation losses, eq. (4) (KL balancing, free bits).

      L_dyn = max(free_nats, KL[sg(q) || p])   trains the prior p (the dynamics predictor),
      L_rep = max(free_nats, KL[q || sg(p)])   trains the posterior q (the encoder),

    equal in value, different in gradient; below `free_nats` (1 nat in the paper) neither
    has a gradient. Logits [..., G, C] (G categoricals of C classes) -> two [...] arrays.
    """
    if free_nats < 0:
        raise ValueError(f"free_nats: must be >= 0, got {free_nats}")
    sg = jax.lax.stop_gradient
    dyn = categorical_kl(sg(posterior_logits), prior_logits)
    rep = categorical_kl(posterior_logits, sg(prior_logits))
    return jnp.maximum(dyn, free_nats), jnp.maximum(rep, free_nats)


class ReturnRange(NamedTuple):
    """EMAs of the 5th and 95th percentiles of the lambda-returns (scalars, float32)."""

    low: Array
    high: Array


def init_return_range() -> ReturnRange:
    """The return range before any update: both percentiles 0 (so the scale max(1, S) is 1)."""
    return ReturnRange(jnp.float32(0.0), jnp.float32(0.0))


def return_range_update(
    state: ReturnRange,
    returns: Array,
    decay: float = 0.99,
    low_percentile: float = 5.0,
    high_percentile: float = 95.0,
) -> tuple[ReturnRange, Array]:
    """One EMA step of the returns' percentiles and the scale of DreamerV3's eq. (11):

      low  <- decay low  + (1 - decay) Per(R, 5),   high <- decay high + (1 - decay) Per(R, 95),
      S = high - low;   scale = max(1, S).

    Large returns are scaled down, small ones are not scaled up. returns: any shape (all
    entries pooled); no gradient flows. Returns (new state, scale scalar)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay: must be in [0, 1), got {decay}")
    returns = jax.lax.stop_gradient(jnp.ravel(returns)).astype(jnp.float32)
    lo = jnp.percentile(returns, low_percentile)
    hi = jnp.percentile(returns, high_percentile)
    new = ReturnRange(
        decay * state.low + (1.0 - decay) * lo, decay * state.high + (1.0 - decay) * hi
    )
    return new, jnp.maximum(1.0, new.high - new.low)


def dreamer_actor_loss(
    log_probs_t: Array,
    a_t: Array,
    returns_t: Array,
    values_t: Array,
    scale: Array,
    entropy_coef: float = 3e-4,
) -> Array:
    """DreamerV3's actor loss for discrete actions, eq. (11), per time step:

      -sg((R_t - v(s_t)) / max(1, S)) ln pi(a_t | s_t) - eta H[pi(. | s_t)],

    REINFORCE with the critic as baseline and the returns scaled by `scale` = max(1, S)
    (`return_range_update`).

    Args:
      log_probs_t: [T, A] log-probabilities of the policy (e.g. `unimix_logits` output).
      a_t: [T] int actions taken in imagination.
      returns_t: [T] lambda-returns R_t; values_t: [T] critic values v(s_t) (both sg'd here).
      scale: scalar max(1, S).
      entropy_coef: eta (3e-4 in the paper).
    Returns:
      [T] losses (weight and average them as the caller's trajectory weights say).
    """
    chex.assert_rank([log_probs_t, a_t, returns_t, values_t], [2, 1, 1, 1])
    chex.assert_equal_shape_prefix([log_probs_t, a_t, returns_t, values_t], 1)
    advantage = jax.lax.stop_gradient((returns_t - values_t) / scale)
    log_pi_a = jnp.take_along_axis(log_probs_t, a_t[:, None].astype(jnp.int32), axis=-1)[:, 0]
    entropy = -jnp.sum(jnp.exp(log_probs_t) * log_probs_t, axis=-1)
    return -advantage * log_pi_a - entropy_coef * entropy
