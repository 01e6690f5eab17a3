"""A chain of cells in JAX: the smallest task with delayed reward, termination and truncation.

Cells 0 .. length-1; the agent starts in cell 0 and observes its cell one-hot. Action 1 moves
right, action 0 moves left (cell 0 is a wall: moving left there stays). Reaching the last
cell gives reward 1 and TERMINATES the episode; otherwise every step gives 0 and an episode
is TRUNCATED after `time_limit` steps. The optimal policy always moves right: return 1 in
length - 1 steps; a uniformly random policy is a reflected random walk that often runs out
of time.

Why it exists: a world-model agent (`rlax_zoo.agents.dreamer`) learns it in seconds, so a
test can check that the whole loop (model, imagination, actor, critic) learns, and that
terminations (continue 0) and truncations (bootstrap) are told apart.

It follows envpool's batched auto-reset exactly, as `rlax_zoo.envs.jax_cartpole` does: the
step after an episode end ignores its action and returns the start observation with reward
0 and both flags false. The env is a `VecEnv` whose handle is the state pytree.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlax_zoo.envs.envpool_env import EnvError, VecEnv


class ChainState(NamedTuple):
    cell: jax.Array  # [N] int32
    elapsed: jax.Array  # [N] int32: steps in the current episode
    needs_reset: jax.Array  # [N] bool: the last step ended the episode
    key: jax.Array  # [2] uint32 (unused by the deterministic dynamics; kept for the contract)


def make_chain_step(length: int, time_limit: int):
    """step(state, action [N] int32) -> (state, (obs [N, length], reward [N], terminated [N],
    truncated [N], info {"elapsed_step": [N]})): the module doc's dynamics."""

    def step(state: ChainState, action: jax.Array):
        moved = jnp.clip(state.cell + jnp.where(action == 1, 1, -1), 0, length - 1)
        elapsed = state.elapsed + 1
        terminated = moved == length - 1
        truncated = (elapsed >= time_limit) & ~terminated
        reset = state.needs_reset
        cell = jnp.where(reset, 0, moved)
        elapsed = jnp.where(reset, 0, elapsed)
        terminated, truncated = terminated & ~reset, truncated & ~reset
        reward = terminated.astype(jnp.float32)
        new = ChainState(cell, elapsed, terminated | truncated, state.key)
        obs = jax.nn.one_hot(cell, length, dtype=jnp.float32)
        return new, (obs, reward, terminated, truncated, {"elapsed_step": elapsed})

    return step


def make_chain(num_envs: int, seed: int, length: int = 5, time_limit: int = 12) -> VecEnv:
    """A batch of `num_envs` chains (the module doc), all in cell 0; a `VecEnv`."""
    if num_envs < 1:
        raise EnvError(f"num_envs must be >= 1, got {num_envs}")
    if length < 2:
        raise EnvError(f"length must be >= 2, got {length}")
    if time_limit < 1:
        raise EnvError(f"time_limit must be >= 1, got {time_limit}")
    state = ChainState(
        jnp.zeros((num_envs,), jnp.int32),
        jnp.zeros((num_envs,), jnp.int32),
        jnp.zeros((num_envs,), bool),
        jax.random.PRNGKey(seed),
    )
    first_obs = np.zeros((num_envs, length), np.float32)
    first_obs[:, 0] = 1.0
    return VecEnv(
        env=None,
        handle=state,
        step=make_chain_step(length, time_limit),
        first_obs=first_obs,
        num_envs=num_envs,
        obs_shape=(length,),
        obs_dtype=np.dtype(np.float32),
        num_actions=2,
    )
