"""Multi-step return targets over a single trajectory, time-major, rlax conventions.

Vendorable: imports only jax and chex.

Index conventions (as in rlax): `r_t[i]`, `discount_t[i]`, `v_t[i]` are the reward, discount
and value at time i+1 of a trajectory whose states are s_0 .. s_T; the return G_i is the
target for s_i. `discount_t` is 0 where the episode TERMINATED (no bootstrap across it) and
gamma where it was TRUNCATED or continues. The last return always bootstraps from v_t[-1]
(scaled by discount_t[-1]), so a trajectory cut by a time limit or a rollout boundary
bootstraps, and one ending in termination does not.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def _check(r_t, discount_t, v_t):
    chex.assert_rank([r_t, discount_t, v_t], 1)
    chex.assert_type([r_t, discount_t, v_t], float)
    chex.assert_equal_shape([r_t, discount_t, v_t])


def lambda_returns(
    r_t: Array,
    discount_t: Array,
    v_t: Array,
    lambda_: float | Array = 1.0,
    stop_target_gradients: bool = False,
) -> Array:
    """TD(lambda) returns (Sutton & Barto 2018, eq. 12.3, recursive form of eq. 12.2).

    G_i = r_t[i] + discount_t[i] * ((1 - lambda_i) v_t[i] + lambda_i G_{i+1}),
    with G_{T-1} = r_t[T-1] + discount_t[T-1] v_t[T-1].
    lambda_ = 1 gives Monte-Carlo returns bootstrapped at the end; 0 gives one-step targets.

    Args:
      r_t: [T] rewards at times 1..T.
      discount_t: [T] discounts at times 1..T.
      v_t: [T] values at times 1..T.
      lambda_: scalar or [T] mixing parameter in [0, 1].
    Returns:
      [T] returns G_0 .. G_{T-1}.
    """
    _check(r_t, discount_t, v_t)
    lambda_ = jnp.ones_like(discount_t) * lambda_

    def backward(g_next, xs):
        r, d, v, lam = xs
        g = r + d * ((1.0 - lam) * v + lam * g_next)
        return g, g

    _, returns = jax.lax.scan(backward, v_t[-1], (r_t, discount_t, v_t, lambda_), reverse=True)
    return jax.lax.stop_gradient(returns) if stop_target_gradients else returns


def discounted_returns(
    r_t: Array, discount_t: Array, v_t: Array, stop_target_gradients: bool = False
) -> Array:
    """Discounted returns bootstrapped at the end (Sutton & Barto 2018, eq. 3.9).

    G_i = r_t[i] + discount_t[i] G_{i+1}, G_{T-1} = r_t[T-1] + discount_t[T-1] v_t[T-1].

    Args:
      r_t: [T] rewards; discount_t: [T] discounts; v_t: [T] values (only v_t[-1] is used)
      or a scalar bootstrap value.
    Returns:
      [T] returns.
    """
    v_t = jnp.broadcast_to(v_t, r_t.shape).astype(r_t.dtype)
    return lambda_returns(r_t, discount_t, v_t, 1.0, stop_target_gradients)


def n_step_bootstrapped_returns(
    r_t: Array,
    discount_t: Array,
    v_t: Array,
    n: int,
    lambda_t: float | Array = 1.0,
    stop_target_gradients: bool = False,
) -> Array:
    """Strided n-step bootstrapped returns (Sutton & Barto 2018, eq. 7.1; Mnih et al. 2016).

    With lambda_t = 1:
      G_i = r_t[i] + d[i] r_t[i+1] + ... + (d[i]..d[i+n-2]) r_t[i+n-1]
            + (d[i]..d[i+n-1]) v_t[i+n-1],
    where windows that would run past the end of the trajectory stop at T-1 and bootstrap
    from v_t[T-1]. A zero discount inside a window cuts both later rewards and the bootstrap.
    With lambda_t < 1 each step mixes as G = r + d ((1 - lambda) v + lambda G') (rlax).

    Args:
      r_t: [T] rewards at times 1..T.
      discount_t: [T] discounts at times 1..T.
      v_t: [T] values at times 1..T.
      n: number of steps, >= 1.
      lambda_t: scalar or [T] mixing parameter.
    Returns:
      [T] n-step returns.
    """
    _check(r_t, discount_t, v_t)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seq_len = r_t.shape[0]
    lambda_t = jnp.ones_like(discount_t) * lambda_t
    # Pad n-1 identity steps (r=0, d=1, v=v_{T-1}) past the end, so windows that run off the
    # trajectory pass the bootstrap value v_{T-1} through unchanged.
    pad = n - 1
    v_last = jnp.full((pad,), v_t[-1], v_t.dtype)
    r_pad = jnp.concatenate([r_t, jnp.zeros((pad,), r_t.dtype)])
    d_pad = jnp.concatenate([discount_t, jnp.ones((pad,), discount_t.dtype)])
    lam_pad = jnp.concatenate([lambda_t, jnp.ones((pad,), lambda_t.dtype)])
    v_pad = jnp.concatenate([v_t, v_last])
    returns = v_pad[pad : pad + seq_len]  # v_{i+n-1}, clipped at v_{T-1}
    for k in reversed(range(n)):
        r, d = r_pad[k : k + seq_len], d_pad[k : k + seq_len]
        v, lam = v_pad[k : k + seq_len], lam_pad[k : k + seq_len]
        returns = r + d * ((1.0 - lam) * v + lam * returns)
    return jax.lax.stop_gradient(returns) if stop_target_gradients else returns
