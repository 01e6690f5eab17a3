"""CartPole-v1 in JAX, stepped inside the calling thread's jitted function.

The same system as envpool's (and gymnasium's) CartPole-v1 (Barto, Sutton and Anderson 1983;
the cart-pole equations of motion of Florian 2007 with Euler integration, tau = 0.02 s):

  temp        = (F + m_p l theta_dot^2 sin theta) / (m_c + m_p)
  theta_acc   = (g sin theta - cos theta temp) / (l (4/3 - m_p cos^2 theta / (m_c + m_p)))
  x_acc       = temp - m_p l theta_acc cos theta / (m_c + m_p)
  x += tau x_dot; x_dot += tau x_acc; theta += tau theta_dot; theta_dot += tau theta_acc

with F = +-10 N, g = 9.8, m_c = 1, m_p = 0.1, l = 0.5. Reward 1 per step; terminated when
|x| > 2.4 or |theta| > 12 degrees; truncated at 500 steps; initial state uniform in
(-0.05, 0.05)^4. It follows envpool's batched auto-reset exactly: the step after an episode
end ignores its action and returns a fresh initial observation with reward 0 and both flags
false, and a time-limit end is reported as truncated (not terminated) as envpool does.

Why it exists: envpool hands every step to a worker thread and its caller spin-waits, so
one stream of CartPole steps keeps about 1.3-1.4 cores busy; on a 2-core machine two
actor-learner threads stepping envpool cannot run side by side (measured in
`benchmarks/bench_async_threads.py`). This env runs inside the thread's own jitted call,
during which JAX releases the GIL. The physics runs in float32 (envpool's in float64):
trajectories agree with envpool's step by step to about 1e-6 and in distribution beyond.

The env is a `VecEnv` whose handle is the state pytree, so any code written for
`make_vec_env` (`handle, (obs, reward, terminated, truncated, info) = step(handle, action)`
inside `jax.jit`) takes it unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlax_zoo.envs.envpool_env import EnvError, VecEnv

ENV_ID = "CartPole-v1"
GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
FORCE, TAU, X_LIMIT = 10.0, 0.02, 2.4
THETA_LIMIT = 12 * 2 * np.pi / 360
MAX_STEPS = 500


class CartPoleState(NamedTuple):
    """The batch's state (leaves [N, ...]) and the key its resets draw from."""

    physics: jax.Array  # [N, 4] float32: x, x_dot, theta, theta_dot (= the observation)
    elapsed: jax.Array  # [N] int32: steps in the current episode
    needs_reset: jax.Array  # [N] bool: the last step ended the episode
    key: jax.Array  # [2] uint32


def dynamics(physics: jax.Array, action: jax.Array) -> jax.Array:
    """One Euler step of the cart-pole equations (module docstring). physics [..., 4] float32,
    action [...] int (1 pushes right) -> next physics [..., 4]."""
    x, x_dot, theta, theta_dot = jnp.moveaxis(physics, -1, 0)
    force = jnp.where(action == 1, FORCE, -FORCE)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    total = MASS_CART + MASS_POLE
    temp = (force + MASS_POLE * HALF_LENGTH * theta_dot**2 * sin) / total
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos**2 / total)
    )
    x_acc = temp - MASS_POLE * HALF_LENGTH * theta_acc * cos / total
    new = (
        x + TAU * x_dot,
        x_dot + TAU * x_acc,
        theta + TAU * theta_dot,
        theta_dot + TAU * theta_acc,
    )
    return jnp.stack(new, axis=-1)


def step(state: CartPoleState, action: jax.Array):
    """envpool's step contract: (state, action [N] int32) -> (state, (obs [N, 4], reward [N],
    terminated [N], truncated [N], info {"elapsed_step": [N]}))."""
    key, sub = jax.random.split(state.key)
    fresh = jax.random.uniform(sub, state.physics.shape, jnp.float32, -0.05, 0.05)
    moved = dynamics(state.physics, action)
    x, theta = moved[:, 0], moved[:, 2]
    elapsed = state.elapsed + 1
    failed = (jnp.abs(x) > X_LIMIT) | (jnp.abs(theta) > THETA_LIMIT)
    truncated = elapsed >= MAX_STEPS
    terminated = failed & ~truncated
    reset = state.needs_reset
    physics = jnp.where(reset[:, None], fresh, moved)
    elapsed = jnp.where(reset, 0, elapsed)
    terminated, truncated = terminated & ~reset, truncated & ~reset
    reward = jnp.where(reset, 0.0, 1.0).astype(jnp.float32)
    new = CartPoleState(physics, elapsed, terminated | truncated, key)
    return new, (physics, reward, terminated, truncated, {"elapsed_step": elapsed})


def make_jax_cartpole(num_envs: int, seed: int) -> VecEnv:
    """A batch of `num_envs` JAX CartPole-v1 envs, reset with PRNGKey(seed); a `VecEnv`."""
    if num_envs < 1:
        raise EnvError(f"num_envs must be >= 1, got {num_envs}")
    key, sub = jax.random.split(jax.random.PRNGKey(seed))
    physics = jax.random.uniform(sub, (num_envs, 4), jnp.float32, -0.05, 0.05)
    state = CartPoleState(
        physics=physics,
        elapsed=jnp.zeros((num_envs,), jnp.int32),
        needs_reset=jnp.zeros((num_envs,), bool),
        key=key,
    )
    return VecEnv(
        env=None,
        handle=state,
        step=step,
        first_obs=np.asarray(physics),
        num_envs=num_envs,
        obs_shape=(4,),
        obs_dtype=np.dtype(np.float32),
        num_actions=2,
    )
