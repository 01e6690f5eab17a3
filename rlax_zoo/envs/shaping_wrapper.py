"""Potential-based reward shaping around an envpool-style batched xla step.

Ng, Harada & Russell (1999), Theorem 1: the reward r + gamma * Phi(s') - Phi(s) has the same
optimal policies as r. This module adds that shaping to every transition of a batched env
whose step is envpool's `env.xla()` step (see `rlax_zoo.envs.envpool_env`):

    step(handle, actions[N] int32) -> (handle, (obs[N, ...], reward[N], terminated[N],
                                                 truncated[N], info))

The shaped step has the SAME signature, with a `ShapingState` pytree in place of the handle,
so it drops into code written for the plain step (a `lax.scan` carrying the handle,
`replay_actions`, ...). Per env and step t, with `Phi` the user's potential:

  * ordinary step:      F_t = gamma * Phi(obs_t) - Phi(obs_{t-1})
  * terminated at t:    F_t = -Phi(obs_{t-1})          (Phi(terminal) = 0: discount 0)
  * truncated at t:     F_t = gamma * Phi(obs_t) - Phi(obs_{t-1})   (obs_t is the true last
                        observation; truncation is not termination)
  * envpool reset step (the step after a terminated or truncated one): not a transition of
    the MDP (envpool ignores the action and returns the reset observation with reward 0), so
    F_t = 0, not gamma * Phi(reset obs) - Phi(final obs); the carried potential becomes
    Phi(reset obs), from which the new episode's first real transition is shaped.

With gamma = 1 the shaping of an episode that terminates telescopes to -Phi(s_0).

The returned `reward` is the shaped one (what a learner should use). The environment's own
reward and the shaping term come back in `info["env_reward"]` and `info["shaping"]`: log
episode returns from `info["env_reward"]`, so logged returns stay the environment's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from rlax_zoo.envs.envpool_env import VecEnv
from rlax_zoo.shaping import potential_based_shaping

PotentialFn = Callable[[jax.Array], jax.Array]  # obs [N, ...] -> potentials [N]


class ShapingState(NamedTuple):
    """What the shaped step carries besides the wrapped env's handle."""

    handle: Any  # the wrapped step's state (envpool's xla handle)
    phi_tm1: jax.Array  # [N] float potential of the latest observation
    prev_done: jax.Array  # [N] bool: the latest step ended an episode (next is a reset step)


def _check_discount(discount: float) -> None:
    if isinstance(discount, bool) or not isinstance(discount, int | float):
        raise ValueError(f"discount must be a Python number in [0, 1], got {discount!r}")
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1], got {discount!r}")


def _potential(potential_fn: PotentialFn, obs: jax.Array) -> jax.Array:
    phi = potential_fn(obs)
    chex.assert_shape(phi, (obs.shape[0],))
    chex.assert_type(phi, float)
    return phi


def init_shaping_state(
    handle: Any, first_obs: jax.Array, potential_fn: PotentialFn
) -> ShapingState:
    """The shaping state after the env's reset: Phi(first_obs), no episode just ended.

    Args:
      handle: the wrapped env's handle (envpool's xla handle).
      first_obs: [N, ...] observations returned by the env's reset.
      potential_fn: jax-traceable Phi, obs [N, ...] -> [N] float.
    """
    phi = _potential(potential_fn, jnp.asarray(first_obs))
    return ShapingState(handle=handle, phi_tm1=phi, prev_done=jnp.zeros(phi.shape, jnp.bool_))


def shape_step(step: Callable, potential_fn: PotentialFn, discount: float) -> Callable:
    """Wrap an envpool-style xla step so its reward is potential-shaped (Ng et al. 1999, Thm 1).

    r'_t = r_t + (gamma * (1 - terminated_t) * Phi(obs_t) - Phi(obs_{t-1})) * (1 - reset_t)

    where reset_t marks envpool's auto-reset step (the step after an episode end).

    Args:
      step: (handle, actions [N] int32) -> (handle, (obs, reward, terminated, truncated, info)).
      potential_fn: jax-traceable Phi, obs [N, ...] -> [N] float.
      discount: gamma in [0, 1], the discount the learner uses (the theorem needs the same).
    Returns:
      (ShapingState, actions [N]) -> (ShapingState, (obs, shaped_reward [N], terminated,
      truncated, info)), info extended with "env_reward" [N] and "shaping" [N].
    """
    _check_discount(discount)
    shaping = jax.vmap(potential_based_shaping)

    def shaped_step(state: ShapingState, actions: jax.Array):
        handle, (obs, reward, terminated, truncated, info) = step(state.handle, actions)
        phi_t = _potential(potential_fn, obs)
        chex.assert_equal_shape([phi_t, state.phi_tm1, reward, terminated, truncated])
        discount_t = jnp.where(terminated, 0.0, discount).astype(phi_t.dtype)
        f_t = shaping(state.phi_tm1.astype(phi_t.dtype), phi_t, discount_t)
        f_t = jnp.where(state.prev_done, 0.0, f_t).astype(reward.dtype)  # reset step: no shaping
        info = {**info, "env_reward": reward, "shaping": f_t}
        new_state = ShapingState(
            handle=handle, phi_tm1=phi_t, prev_done=jnp.logical_or(terminated, truncated)
        )
        return new_state, (obs, reward + f_t, terminated, truncated, info)

    return shaped_step


def shape_vec_env(vec_env: VecEnv, potential_fn: PotentialFn, discount: float) -> VecEnv:
    """A `VecEnv` whose step returns shaped rewards; its `handle` is a `ShapingState`.

    Must be called right after `make_vec_env` (the env freshly reset to `first_obs`).
    """
    step = shape_step(vec_env.step, potential_fn, discount)
    state = init_shaping_state(vec_env.handle, vec_env.first_obs, potential_fn)
    return vec_env._replace(handle=state, step=step)
