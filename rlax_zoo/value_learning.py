"""One-step value-learning TD errors, single stream, rlax conventions.

Vendorable: imports only jax and chex.

Conventions (as in google-deepmind/rlax): every function handles ONE transition; batch with
`jax.vmap`. Suffix `_tm1` is time t-1 (the state the action was taken in), `_t` is time t.
Outputs are TD errors (target - prediction), not losses. `discount_t` is gamma times the
"episode continues" flag: pass 0 when the episode TERMINATED at t, and gamma when it was
TRUNCATED (time limit) or continues, so that truncation bootstraps and termination does not.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = chex.Array


def _maybe_stop(x: Array, stop: bool) -> Array:
    return jax.lax.stop_gradient(x) if stop else x


def _check(q_tm1, a_tm1, r_t, discount_t, *q_ts):
    chex.assert_rank([q_tm1, a_tm1, r_t, discount_t], [1, 0, 0, 0])
    chex.assert_type([q_tm1, a_tm1, r_t, discount_t], [float, int, float, float])
    for q_t in q_ts:
        chex.assert_rank(q_t, 1)
        chex.assert_equal_shape([q_tm1, q_t])


def q_learning(
    q_tm1: Array,
    a_tm1: Array,
    r_t: Array,
    discount_t: Array,
    q_t: Array,
    stop_target_gradients: bool = True,
) -> Array:
    """Q-learning TD error (Watkins 1989; Sutton & Barto 2018, eq. 6.8).

    delta = r_t + discount_t * max_a q_t[a] - q_tm1[a_tm1]

    Args:
      q_tm1: [A] action values at t-1.
      a_tm1: [] int action taken at t-1.
      r_t: [] reward at t.
      discount_t: [] discount at t (0 on termination, gamma otherwise).
      q_t: [A] action values at t.
      stop_target_gradients: stop gradients through the target.
    Returns:
      [] TD error.
    """
    _check(q_tm1, a_tm1, r_t, discount_t, q_t)
    target = _maybe_stop(r_t + discount_t * jnp.max(q_t), stop_target_gradients)
    return target - q_tm1[a_tm1]


def double_q_learning(
    q_tm1: Array,
    a_tm1: Array,
    r_t: Array,
    discount_t: Array,
    q_t_value: Array,
    q_t_selector: Array,
    stop_target_gradients: bool = True,
) -> Array:
    """Double Q-learning TD error (van Hasselt et al. 2016, eq. 4; van Hasselt 2010, Alg. 1).

    delta = r_t + discount_t * q_t_value[argmax_a q_t_selector[a]] - q_tm1[a_tm1]

    In Double DQN `q_t_selector` comes from the online network and `q_t_value` from the
    target network; in tabular double Q-learning they are the two tables.

    Args:
      q_tm1: [A] action values at t-1.
      a_tm1: [] int action taken at t-1.
      r_t: [] reward at t.
      discount_t: [] discount at t (0 on termination, gamma otherwise).
      q_t_value: [A] action values at t used to evaluate the selected action.
      q_t_selector: [A] action values at t used to select the greedy action.
      stop_target_gradients: stop gradients through the target.
    Returns:
      [] TD error.
    """
    _check(q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector)
    best_action = jnp.argmax(q_t_selector)
    target = r_t + discount_t * q_t_value[best_action]
    return _maybe_stop(target, stop_target_gradients) - q_tm1[a_tm1]


def sarsa(
    q_tm1: Array,
    a_tm1: Array,
    r_t: Array,
    discount_t: Array,
    q_t: Array,
    a_t: Array,
    stop_target_gradients: bool = True,
) -> Array:
    """SARSA TD error (Rummery & Niranjan 1994; Sutton & Barto 2018, eq. 6.7).

    delta = r_t + discount_t * q_t[a_t] - q_tm1[a_tm1]

    Args:
      q_tm1: [A] action values at t-1.
      a_tm1: [] int action taken at t-1.
      r_t: [] reward at t.
      discount_t: [] discount at t.
      q_t: [A] action values at t.
      a_t: [] int action taken at t.
    Returns:
      [] TD error.
    """
    _check(q_tm1, a_tm1, r_t, discount_t, q_t)
    chex.assert_rank(a_t, 0)
    target = _maybe_stop(r_t + discount_t * q_t[a_t], stop_target_gradients)
    return target - q_tm1[a_tm1]


def expected_sarsa(
    q_tm1: Array,
    a_tm1: Array,
    r_t: Array,
    discount_t: Array,
    q_t: Array,
    probs_a_t: Array,
    stop_target_gradients: bool = True,
) -> Array:
    """Expected SARSA TD error (van Seijen et al. 2009; Sutton & Barto 2018, eq. 6.9).

    delta = r_t + discount_t * sum_a pi(a|s_t) q_t[a] - q_tm1[a_tm1]

    Args:
      q_tm1: [A] action values at t-1.
      a_tm1: [] int action taken at t-1.
      r_t: [] reward at t.
      discount_t: [] discount at t.
      q_t: [A] action values at t.
      probs_a_t: [A] target-policy probabilities at t.
    Returns:
      [] TD error.
    """
    _check(q_tm1, a_tm1, r_t, discount_t, q_t, probs_a_t)
    target = _maybe_stop(r_t + discount_t * jnp.dot(q_t, probs_a_t), stop_target_gradients)
    return target - q_tm1[a_tm1]


def huber_loss(x: Array, delta: float = 1.0) -> Array:
    """Huber loss (Huber 1964), elementwise: 0.5 x^2 if |x| <= delta else delta (|x| - delta/2).

    Args:
      x: any shape (usually TD errors).
      delta: the switch point, > 0.
    Returns:
      array of the same shape as x.
    """
    abs_x = jnp.abs(x)
    quadratic = jnp.minimum(abs_x, delta)
    return 0.5 * quadratic**2 + delta * (abs_x - quadratic)
