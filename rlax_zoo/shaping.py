"""Potential-based reward shaping, single stream, rlax conventions.

Vendorable: imports only jax and chex.

Ng, Harada & Russell (1999), "Policy invariance under reward transformations: theory and
application to reward shaping", Theorem 1: adding a shaping reward

    F(s, a, s') = gamma * Phi(s') - Phi(s)

to every transition of an MDP, for any real-valued potential Phi over states, leaves its
optimal policies unchanged, and the optimal values shift by the potential:
Q'*(s, a) = Q*(s, a) - Phi(s), V'*(s) = V*(s) - Phi(s). Conversely (same theorem), a shaping
that is not of this form can change the optimal policy, e.g. a positive bonus on every
transition of a cycle makes looping forever optimal.

Conventions (as in google-deepmind/rlax): every function handles ONE transition; batch with
`jax.vmap`. Suffix `_tm1` is time t-1 (the state the action was taken in), `_t` is time t.
`discount_t` is gamma times the "episode continues" flag:

  * TERMINATION at t: pass `discount_t = 0`. This is the paper's convention that the potential
    of a terminal (absorbing) state is 0, so the last transition of an episode is shaped by
    F = -Phi(s_{T-1}), whatever Phi would say about the final observation. With gamma = 1 the
    shaping of an episode then telescopes to -Phi(s_0).
  * TRUNCATION at t (time limit): truncation is not termination. Pass `discount_t = gamma` and
    `phi_t` = the potential of the true last observation (not of the next episode's reset
    observation): the truncated state has its real potential, as it would for bootstrapping.
  * otherwise: `discount_t = gamma`.
"""

from __future__ import annotations

import chex

Array = chex.Array


def potential_based_shaping(phi_tm1: Array, phi_t: Array, discount_t: Array) -> Array:
    """Potential-based shaping reward (Ng, Harada & Russell 1999, Theorem 1).

    F_t = discount_t * Phi(s_t) - Phi(s_{t-1})

    i.e. F(s, a, s') = gamma * Phi(s') - Phi(s), with Phi(terminal) = 0 expressed through
    `discount_t = 0` on termination (then F_t = -Phi(s_{t-1})). On truncation pass gamma and
    the potential of the true last observation.

    Args:
      phi_tm1: [] float potential of the state at t-1 (where the action was taken).
      phi_t: [] float potential of the state at t.
      discount_t: [] float discount at t (0 on termination, gamma otherwise).
    Returns:
      [] shaping reward F_t.
    """
    chex.assert_rank([phi_tm1, phi_t, discount_t], 0)
    chex.assert_type([phi_tm1, phi_t, discount_t], float)
    return discount_t * phi_t - phi_tm1


def shaped_reward(r_t: Array, phi_tm1: Array, phi_t: Array, discount_t: Array) -> Array:
    """Reward plus potential-based shaping (Ng, Harada & Russell 1999, Theorem 1).

    r'_t = r_t + discount_t * Phi(s_t) - Phi(s_{t-1})

    Learning on r'_t with the same `discount_t` finds the same optimal policy as learning
    on r_t; the learned action values are Q(s, a) - Phi(s).

    Args:
      r_t: [] float reward at t.
      phi_tm1: [] float potential of the state at t-1.
      phi_t: [] float potential of the state at t.
      discount_t: [] float discount at t (0 on termination, gamma otherwise).
    Returns:
      [] shaped reward.
    """
    chex.assert_rank(r_t, 0)
    chex.assert_type(r_t, float)
    return r_t + potential_based_shaping(phi_tm1, phi_t, discount_t)
