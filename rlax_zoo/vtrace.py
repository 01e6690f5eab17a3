"""V-trace off-policy value targets and policy-gradient advantages (single file, vendorable).

Paper: Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures", Section 4, eq. (1) (the n-step V-trace target), Remark 1 (its
recursive form) and Section 4.2 (the actor-critic update with V-trace).

Conventions are rlax's, so a user of `rlax.vtrace` / `rlax.vtrace_td_error_and_advantage` can
switch: one trajectory (single stream, time-major), batch with `jax.vmap`; index t of every
argument describes the transition x_t -> x_{t+1}:

  v_tm1[t]      = V(x_t)               (the value of the state the action was taken in)
  v_t[t]        = V(x_{t+1})           (the value of the state it led to)
  r_t[t]        = r_t
  discount_t[t] = gamma_t              (0 where the episode terminated at x_{t+1})
  rho_tm1[t]    = pi(a_t|x_t) / mu(a_t|x_t)

Eq. (1), with a per-step discount: with delta_t V = rho_t (r_t + gamma_t V(x_{t+1}) - V(x_t)),
rho_t = min(rho_bar, pi/mu) and c_i = lambda_i min(c_bar, pi/mu),

  v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) delta_t V,

computed backwards as v_s - V(x_s) = delta_s V + gamma_s c_s (v_{s+1} - V(x_{s+1})), with
v_T = V(x_T) at the end of the trajectory (the bootstrap). Where rlax and this file agree: the
same recursion, the same lambda-mixed q estimate (below), the same clipping for c_bar = 1
(rlax fixes c_bar = 1; here `clip_c_threshold` is free). `scan_impl="associative"` computes
the same linear recursion with `jax.lax.associative_scan` (O(log T) depth, for accelerators).

Where this file goes past rlax: `clip_c_threshold`, the associative scan, and the rho / c
clipping of very large ratios done before the product, so rho = inf gives rho_bar, never nan.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

Array = chex.Array
SCAN_IMPLS = ("sequential", "associative")


class VTraceOutput(NamedTuple):
    """`errors` v_s - V(x_s); `pg_advantage` rho_s (q_s - V(x_s)); `q_estimate` q_s. All [T]."""

    errors: Array
    pg_advantage: Array
    q_estimate: Array


def _check_inputs(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_) -> None:
    chex.assert_rank([v_tm1, v_t, r_t, discount_t, rho_tm1], 1)
    chex.assert_rank(lambda_, {0, 1})
    chex.assert_type([v_tm1, v_t, r_t, discount_t, rho_tm1], float)
    chex.assert_equal_shape([v_tm1, v_t, r_t, discount_t, rho_tm1])
    if jnp.ndim(lambda_) == 1:
        chex.assert_equal_shape([lambda_, rho_tm1])


def _linear_recursion_backwards(a: Array, b: Array, scan_impl: str) -> Array:
    """acc_t = a_t + b_t acc_{t+1}, acc_T = 0, for t = T-1..0. a, b: [T] -> [T]."""
    if scan_impl == "sequential":

        def body(acc, ab):
            a_t, b_t = ab
            acc = a_t + b_t * acc
            return acc, acc

        return jax.lax.scan(body, jnp.zeros((), a.dtype), (a, b), reverse=True)[1]
    if scan_impl == "associative":
        # Element t is the affine map x -> a_t + b_t x; acc_t composes maps t, t+1, ..., T-1.
        # With reverse=True, `combine(later, earlier)` must return earlier o later.
        def combine(later, earlier):
            b_l, a_l = later
            b_e, a_e = earlier
            return b_e * b_l, a_e + b_e * a_l

        return jax.lax.associative_scan(combine, (b, a), reverse=True)[1]
    raise ValueError(f"scan_impl must be one of {SCAN_IMPLS}, got {scan_impl!r}")


def vtrace(
    v_tm1: Array,
    v_t: Array,
    r_t: Array,
    discount_t: Array,
    rho_tm1: Array,
    lambda_: Array | float = 1.0,
    clip_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
    stop_target_gradients: bool = True,
    scan_impl: str = "sequential",
) -> Array:
    """V-trace errors v_s - V(x_s) of one trajectory (Espeholt et al. 2018, eq. 1 / Remark 1).

    Args:
      v_tm1: [T] V(x_t).
      v_t: [T] V(x_{t+1}); v_t[-1] is the bootstrap value V(x_T).
      r_t: [T] rewards.
      discount_t: [T] gamma_t (0 at a termination: the trace and the bootstrap stop there).
      rho_tm1: [T] importance ratios pi(a_t|x_t) / mu(a_t|x_t), >= 0 (inf is allowed).
      lambda_: scalar or [T]; c_t = lambda_t min(c_bar, rho_t). A 0 cuts the trace after step
        t while still bootstrapping from V(x_{t+1}) (use it where a time limit truncated the
        episode at x_{t+1} and the next row starts a new one).
      clip_rho_threshold: rho_bar (inf: no clipping).
      clip_c_threshold: c_bar.
      stop_target_gradients: return sg(v_s) - V(x_s), so that gradients flow only through V(x_s).
      scan_impl: "sequential" (`lax.scan`) or "associative" (`lax.associative_scan`); equal up
        to float rounding.

    Returns:
      [T] errors v_s - V(x_s); the value loss is 0.5 errors^2.
    """
    _check_inputs(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_)
    clipped_rho = jnp.minimum(clip_rho_threshold, rho_tm1)
    c = jnp.minimum(clip_c_threshold, rho_tm1) * lambda_
    td = clipped_rho * (r_t + discount_t * v_t - v_tm1)
    errors = _linear_recursion_backwards(td, discount_t * c, scan_impl)
    if stop_target_gradients:
        return jax.lax.stop_gradient(errors + v_tm1) - v_tm1
    return errors


def vtrace_td_error_and_advantage(
    v_tm1: Array,
    v_t: Array,
    r_t: Array,
    discount_t: Array,
    rho_tm1: Array,
    lambda_: Array | float = 1.0,
    clip_rho_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
    stop_target_gradients: bool = True,
    scan_impl: str = "sequential",
) -> VTraceOutput:
    """V-trace errors, policy-gradient advantages and q estimates (Espeholt et al. 2018, 4.2).

    The actor-critic update of Section 4.2 uses the advantage
    rho^pg_s (r_s + gamma_s v_{s+1} - V(x_s)), rho^pg_s = min(clip_pg_rho_threshold, pi/mu),
    with v_{s+1} the V-trace target of the next state. As in rlax, the target in q_s is mixed
    with lambda: q_s = r_s + gamma_s (lambda_s v_{s+1} + (1 - lambda_s) V(x_{s+1})), which is
    the paper's q_s for lambda = 1, and bootstraps from V(x_{s+1}) where lambda_s = 0 cuts the
    trace (a truncated episode); q_{T-1} = r + gamma V(x_T).

    Args:
      v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_, clip_rho_threshold, clip_c_threshold,
      stop_target_gradients, scan_impl: as in `vtrace` ([T] arrays).
      clip_pg_rho_threshold: the clip of the ratio that weights the policy gradient.

    Returns:
      `VTraceOutput(errors, pg_advantage, q_estimate)`, each [T]. The advantage is a target:
      the caller stops its gradient (it carries none from the values when
      `stop_target_gradients`).
    """
    errors = vtrace(
        v_tm1,
        v_t,
        r_t,
        discount_t,
        rho_tm1,
        lambda_,
        clip_rho_threshold,
        clip_c_threshold,
        stop_target_gradients,
        scan_impl,
    )
    lambda_ = jnp.broadcast_to(jnp.asarray(lambda_, v_tm1.dtype), v_tm1.shape)
    targets = errors + v_tm1  # v_s
    next_target = jnp.concatenate(
        [lambda_[:-1] * targets[1:] + (1.0 - lambda_[:-1]) * v_t[:-1], v_t[-1:]]
    )
    q_estimate = r_t + discount_t * next_target
    pg_advantage = jnp.minimum(clip_pg_rho_threshold, rho_tm1) * (q_estimate - v_tm1)
    if stop_target_gradients:
        q_estimate = jax.lax.stop_gradient(q_estimate)
        pg_advantage = jax.lax.stop_gradient(pg_advantage)
    return VTraceOutput(errors, pg_advantage, q_estimate)
