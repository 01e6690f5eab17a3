"""Policy-gradient losses and n-step advantages, single stream, time-major, rlax conventions.

Vendorable: imports only jax, chex and distrax.

Papers: Williams 1992 (REINFORCE); Sutton, McAllester, Singh & Mansour 2000 ("Policy Gradient
Methods for Reinforcement Learning with Function Approximation", Theorems 1 and 2); Mnih et al.
2016 (A3C, Algorithm S3: n-step advantage actor-critic with entropy regularisation).

Conventions (as in google-deepmind/rlax): every function handles ONE trajectory of T steps;
batch with `jax.vmap`. `logits_t[i]`, `a_t[i]`, `v_t[i]` belong to the state s_i in which the
action was taken; rewards and discounts are indexed as in `multistep.py`: `r_t[i]` and
`discount_t[i]` are the reward and discount received on the transition s_i -> s_{i+1}.
Losses are means over time of per-step terms weighted by `w_t` (0 masks a step out; the mean
divides by T, not by sum(w_t)), so a caller minimises them with gradient descent.

Termination vs truncation: `discount_t[i]` is gamma * (1 - terminated_{i+1}). Pass 0 when the
episode TERMINATED on the transition (no bootstrap across it) and gamma when it continues. When
the rollout is cut (the rollout boundary or a time limit on its last step) pass gamma and give
the value of the last state as `bootstrap_value`, so truncation bootstraps. When a time limit
truncates an episode INSIDE a rollout (and the environment auto-resets, so s_{i+1} belongs to
the next episode), add gamma * V(final observation) to r_t[i] and pass discount_t[i] = 0.
"""

from __future__ import annotations

import chex
import distrax
import jax
import jax.numpy as jnp

Array = chex.Array


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_losses_inputs(logits_t, a_t, adv_t, w_t):
    chex.assert_rank([logits_t, a_t, adv_t, w_t], [2, 1, 1, 1])
    chex.assert_type([logits_t, a_t, adv_t, w_t], [float, int, float, float])
    chex.assert_equal_shape([a_t, adv_t, w_t])
    chex.assert_equal_shape_prefix([logits_t, a_t], 1)


def _log_prob(logits_t: Array, a_t: Array) -> Array:
    log_pi = jax.nn.log_softmax(logits_t, axis=-1)
    return jnp.take_along_axis(log_pi, a_t[:, None], axis=-1)[:, 0]


def _categorical_entropy(logits_t: Array) -> Array:
    log_pi = jax.nn.log_softmax(logits_t, axis=-1)
    pi = jnp.exp(log_pi)
    # Masked actions (logit -inf) have pi = 0 and contribute 0, not 0 * -inf = nan; the
    # where sits on log_pi (not on the product) so the gradient stays finite too.
    return -jnp.sum(pi * jnp.where(pi > 0.0, log_pi, 0.0), axis=-1)


def categorical_policy(logits: Array) -> distrax.Categorical:
    """Softmax policy pi(a|s) = exp(logits[a]) / sum_b exp(logits[b]) (Sutton et al. 2000, Sec. 3).

    Args:
      logits: [..., A] unnormalised log-probabilities; -inf marks an illegal action.
    Returns:
      a `distrax.Categorical` with batch shape [...] over A actions.
    """
    if jnp.ndim(logits) < 1:
        raise ValueError(f"logits must have rank >= 1 ([..., A]), got shape {jnp.shape(logits)}")
    chex.assert_type(logits, float)
    return distrax.Categorical(logits=logits)


def gaussian_policy(
    mean: Array, log_std: Array, min_log_std: float = -20.0, max_log_std: float = 2.0
) -> distrax.MultivariateNormalDiag:
    """Diagonal Gaussian policy N(mean, diag(exp(log_std))^2) (Williams 1992, Gaussian units).

    `log_std` is clipped into [min_log_std, max_log_std] so a runaway network output cannot
    give a zero or infinite scale. Called outside `jax.jit`, non-finite inputs raise ValueError.

    Args:
      mean: [..., D] action means.
      log_std: [..., D] log standard deviations (same shape as mean).
      min_log_std, max_log_std: clipping range for log_std, min_log_std < max_log_std.
    Returns:
      a `distrax.MultivariateNormalDiag` with batch shape [...] and event shape [D].
    """
    if jnp.ndim(mean) < 1:
        raise ValueError(f"mean must have rank >= 1 ([..., D]), got shape {jnp.shape(mean)}")
    chex.assert_type([mean, log_std], float)
    chex.assert_equal_shape([mean, log_std])
    if not min_log_std < max_log_std:
        raise ValueError(f"need min_log_std < max_log_std, got {min_log_std}, {max_log_std}")
    for name, x in (("mean", mean), ("log_std", log_std)):
        if _is_concrete(x) and not bool(jnp.all(jnp.isfinite(x))):
            raise ValueError(f"{name} must be finite, got non-finite values")
    log_std = jnp.clip(log_std, min_log_std, max_log_std)
    return distrax.MultivariateNormalDiag(loc=mean, scale_diag=jnp.exp(log_std))


def policy_gradient_loss(
    logits_t: Array,
    a_t: Array,
    adv_t: Array,
    w_t: Array,
    use_stop_gradient: bool = True,
) -> Array:
    """Policy-gradient loss (Sutton et al. 2000, Theorem 1, eq. 2; Williams 1992, REINFORCE).

    loss = -mean_t(w_t * log pi(a_t|s_t) * adv_t). On an on-policy episode, with w_t = gamma^t
    and adv_t = G_t (or Q, or G_t - b(s_t)), -T * grad(loss) is an unbiased sample of
    Theorem 1's sum_s d^pi(s) sum_a grad pi(a|s) Q^pi(s,a).

    Args:
      logits_t: [T, A] policy logits at the states where a_t was taken.
      a_t: [T] int actions taken.
      adv_t: [T] advantages (or returns / action values).
      w_t: [T] per-step weights (masks, importance weights, gamma^t).
      use_stop_gradient: stop gradients flowing from the loss into adv_t.
    Returns:
      [] loss.
    """
    _check_losses_inputs(logits_t, a_t, adv_t, w_t)
    adv_t = jax.lax.stop_gradient(adv_t) if use_stop_gradient else adv_t
    return -jnp.mean(w_t * _log_prob(logits_t, a_t) * adv_t)


def reinforce_loss(
    logits_t: Array, a_t: Array, returns_t: Array, baseline_t: Array, w_t: Array
) -> Array:
    """REINFORCE with a baseline (Williams 1992; Sutton & Barto 2018, eq. 13.11).

    loss = -mean_t(w_t * log pi(a_t|s_t) * stop_gradient(G_t - b_t)). Neither G_t nor the
    baseline b_t gets a gradient from this term; train the baseline with `baseline_loss`.
    The gradient of the discounted start-state objective J = E[sum_t gamma^t r_t] weights step
    t by gamma^t (Sutton et al. 2000, d^pi); pass w_t = gamma^t for it, or ones for the
    undiscounted-state-weighting form used in practice.

    Args:
      logits_t: [T, A] policy logits.
      a_t: [T] int actions taken.
      returns_t: [T] returns G_t (e.g. Monte-Carlo discounted returns from s_t).
      baseline_t: [T] baseline b(s_t), any function of the state (e.g. a value estimate).
      w_t: [T] per-step weights.
    Returns:
      [] loss.
    """
    chex.assert_rank([returns_t, baseline_t], 1)
    chex.assert_equal_shape([returns_t, baseline_t])
    adv_t = jax.lax.stop_gradient(returns_t - baseline_t)
    return policy_gradient_loss(logits_t, a_t, adv_t, w_t, use_stop_gradient=True)


def baseline_loss(returns_t: Array, baseline_t: Array, w_t: Array) -> Array:
    """Squared-error loss for a baseline / critic (Mnih et al. 2016, Alg. S3, d theta_v line).

    loss = mean_t(w_t * 0.5 * (stop_gradient(G_t) - b_t)^2); only b_t gets gradients.

    Args:
      returns_t: [T] return targets G_t.
      baseline_t: [T] predictions b(s_t) = V(s_t).
      w_t: [T] per-step weights.
    Returns:
      [] loss.
    """
    chex.assert_rank([returns_t, baseline_t, w_t], 1)
    chex.assert_type([returns_t, baseline_t, w_t], float)
    chex.assert_equal_shape([returns_t, baseline_t, w_t])
    td = jax.lax.stop_gradient(returns_t) - baseline_t
    return jnp.mean(w_t * 0.5 * jnp.square(td))


def entropy_loss(logits_t: Array, w_t: Array) -> Array:
    """Negative entropy of a softmax policy (Williams & Peng 1991; Mnih et al. 2016, Sec. 4).

    loss = -mean_t(w_t * H(pi(.|s_t))), H(pi) = -sum_a pi(a) log pi(a); minimising it
    raises the entropy. Masked actions (logit -inf) contribute 0.

    Args:
      logits_t: [T, A] policy logits.
      w_t: [T] per-step weights.
    Returns:
      [] loss.
    """
    chex.assert_rank([logits_t, w_t], [2, 1])
    chex.assert_type([logits_t, w_t], float)
    chex.assert_equal_shape_prefix([logits_t, w_t], 1)
    return -jnp.mean(w_t * _categorical_entropy(logits_t))


def distribution_policy_gradient_loss(
    policy_t: distrax.Distribution,
    a_t: Array,
    adv_t: Array,
    w_t: Array,
    use_stop_gradient: bool = True,
) -> Array:
    """Policy-gradient loss for any distrax policy (Sutton et al. 2000, eq. 2; Williams 1992).

    loss = -mean_t(w_t * policy_t.log_prob(a_t) * adv_t); e.g. with `gaussian_policy` for
    continuous actions.

    Args:
      policy_t: distrax distribution with batch shape [T].
      a_t: [T, ...] actions taken (the distribution's event shape).
      adv_t: [T] advantages.
      w_t: [T] per-step weights.
      use_stop_gradient: stop gradients flowing from the loss into adv_t.
    Returns:
      [] loss.
    """
    chex.assert_rank([adv_t, w_t], 1)
    chex.assert_type([adv_t, w_t], float)
    chex.assert_equal_shape([adv_t, w_t])
    chex.assert_shape(a_t, (adv_t.shape[0], *policy_t.event_shape))
    if tuple(policy_t.batch_shape) != tuple(adv_t.shape):
        raise ValueError(f"policy_t.batch_shape {policy_t.batch_shape} != adv_t {adv_t.shape}")
    adv_t = jax.lax.stop_gradient(adv_t) if use_stop_gradient else adv_t
    return -jnp.mean(w_t * policy_t.log_prob(a_t) * adv_t)


def distribution_entropy_loss(policy_t: distrax.Distribution, w_t: Array) -> Array:
    """Negative entropy of any distrax policy (Mnih et al. 2016, Sec. 4 and supplementary).

    loss = -mean_t(w_t * H(policy_t)); for a diagonal Gaussian
    H = sum_d (log_std_d + 0.5 log(2 pi e)).

    Args:
      policy_t: distrax distribution with batch shape [T].
      w_t: [T] per-step weights.
    Returns:
      [] loss.
    """
    chex.assert_rank(w_t, 1)
    if tuple(policy_t.batch_shape) != tuple(w_t.shape):
        raise ValueError(f"policy_t.batch_shape {policy_t.batch_shape} != w_t {w_t.shape}")
    return -jnp.mean(w_t * policy_t.entropy())


def n_step_advantages(
    r_t: Array,
    discount_t: Array,
    v_tm1: Array,
    bootstrap_value: Array,
    n: int | None = None,
    stop_target_gradients: bool = True,
) -> Array:
    """n-step advantage estimates (Mnih et al. 2016, Alg. S3; Sutton & Barto 2018, eq. 7.1).

    A_i = sum_{k<m} (d_i .. d_{i+k-1}) r_{i+k} + (d_i .. d_{i+m-1}) V(s_{i+m}) - V(s_i),
    with m = min(n, T - i): windows that run past the rollout bootstrap from
    V(s_T) = bootstrap_value. A zero discount (termination) cuts later rewards and the
    bootstrap. n=None (or n >= T) uses every remaining step, as A3C's t_max rollouts do:
    R = V(s_T); R <- r_i + gamma R backwards.
    See the module docstring for termination vs truncation.

    Outputs are TD-style errors target - V(s_i): with stop_target_gradients the gradient only
    flows into v_tm1[i] through -V(s_i), so 0.5 * A^2 is a critic loss; stop gradients yourself
    (as `policy_gradient_loss` does) when using A as the actor's advantage.

    Args:
      r_t: [T] rewards r_i on s_i -> s_{i+1}.
      discount_t: [T] discounts on s_i -> s_{i+1} (0 on termination, gamma otherwise).
      v_tm1: [T] values V(s_0) .. V(s_{T-1}).
      bootstrap_value: [] value V(s_T) of the state after the rollout.
      n: number of steps >= 1, or None for all remaining steps.
      stop_target_gradients: stop gradients through the targets (bootstrap values).
    Returns:
      [T] advantages A_0 .. A_{T-1}.
    """
    chex.assert_rank([r_t, discount_t, v_tm1, bootstrap_value], [1, 1, 1, 0])
    chex.assert_type([r_t, discount_t, v_tm1, bootstrap_value], float)
    chex.assert_equal_shape([r_t, discount_t, v_tm1])
    if n is not None:
        if int(n) != n or n < 1:
            raise ValueError(f"n must be an int >= 1 or None, got {n!r}")
        n = int(n)
    seq_len = r_t.shape[0]
    bootstrap_value = bootstrap_value.astype(r_t.dtype)
    if n is None or n >= seq_len:

        def backward(g_next, xs):
            r, d = xs
            g = r + d * g_next
            return g, g

        _, targets = jax.lax.scan(backward, bootstrap_value, (r_t, discount_t), reverse=True)
    else:
        # Pad n-1 identity steps (r=0, d=1, V=V(s_T)) past the end, so windows that run off
        # the rollout pass the bootstrap value through unchanged.
        pad = n - 1
        v_t = jnp.concatenate([v_tm1[1:], bootstrap_value[None]])  # V(s_1) .. V(s_T)
        v_pad = jnp.concatenate([v_t, jnp.full((pad,), bootstrap_value)])
        r_pad = jnp.concatenate([r_t, jnp.zeros((pad,), r_t.dtype)])
        d_pad = jnp.concatenate([discount_t, jnp.ones((pad,), discount_t.dtype)])

        def step(j, g):
            k = n - 1 - j
            r = jax.lax.dynamic_slice_in_dim(r_pad, k, seq_len)
            d = jax.lax.dynamic_slice_in_dim(d_pad, k, seq_len)
            return r + d * g

        targets = jax.lax.fori_loop(0, n, step, v_pad[pad : pad + seq_len])  # V(s_{i+n}) start
    if stop_target_gradients:
        targets = jax.lax.stop_gradient(targets)
    return targets - v_tm1


def advantage_actor_critic_loss(
    logits_t: Array,
    a_t: Array,
    v_t: Array,
    returns_t: Array,
    w_t: Array,
    entropy_cost: float | Array = 0.01,
    value_cost: float | Array = 1.0,
) -> tuple[Array, dict[str, Array]]:
    """Advantage actor-critic loss (Mnih et al. 2016, Alg. S3 and Sec. 4, entropy bonus).

    With A_t = stop_gradient(R_t - V(s_t)):
      policy  = -mean_t(w_t log pi(a_t|s_t) A_t)
      value   = mean_t(w_t 0.5 (stop_gradient(R_t) - V(s_t))^2)
      entropy = -mean_t(w_t H(pi(.|s_t)))
      total   = policy + value_cost * value + entropy_cost * entropy.
    R_t are n-step returns, e.g. `n_step_advantages(r_t, discount_t, v_t, v_T) + v_t`
    (A3C: n=None over a t_max rollout). Alg. S3's critic step is grad (R - V)^2, i.e.
    value_cost = 2 with the 0.5 used here.

    Args:
      logits_t: [T, A] policy logits at s_t.
      a_t: [T] int actions taken.
      v_t: [T] value estimates V(s_t) (gradients flow into them through the value term).
      returns_t: [T] return targets R_t.
      w_t: [T] per-step weights (e.g. a mask of valid steps).
      entropy_cost: scalar weight beta of the entropy term (A3C used 0.01).
      value_cost: scalar weight of the value term.
    Returns:
      (total [] loss, dict with "policy_loss", "value_loss", "entropy_loss", "entropy",
      "advantage_mean", each []).
    """
    _check_losses_inputs(logits_t, a_t, returns_t, w_t)
    chex.assert_type(v_t, float)
    chex.assert_equal_shape([v_t, returns_t])
    adv_t = jax.lax.stop_gradient(returns_t - v_t)
    pg = policy_gradient_loss(logits_t, a_t, adv_t, w_t, use_stop_gradient=True)
    value = baseline_loss(returns_t, v_t, w_t)
    entropy = -entropy_loss(logits_t, w_t)
    total = pg + value_cost * value - entropy_cost * entropy
    parts = {
        "policy_loss": pg,
        "value_loss": value,
        "entropy_loss": -entropy,
        "entropy": entropy,
        "advantage_mean": jnp.mean(w_t * adv_t),
    }
    return total, parts
