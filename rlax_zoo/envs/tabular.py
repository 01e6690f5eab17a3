"""Tabular MDPs as pure JAX functions.

The maximization-bias MDP of Sutton & Barto (2018), Example 6.7 / Figure 6.5::

      terminal <--right-- [A] --left--> [B] --any of num_b_actions--> terminal
      reward 0                 reward 0       reward ~ N(reward_mean, reward_std^2)

Every episode starts in ``A``. ``right`` terminates at once with reward 0; ``left`` moves to ``B``
with reward 0, and every action in ``B`` terminates with a Gaussian reward of mean -0.1 (so
``left`` is the worse choice: its expected return is -0.1 < 0). Because the maximum of the noisy
estimates of ``Q(B, .)`` is positively biased, Q-learning prefers ``left`` early in learning;
double Q-learning does not (van Hasselt 2010).

States are small integers so the MDP can be ``jax.vmap``-ped over runs: ``A = 0``, ``B = 1``
and an absorbing ``TERMINAL = 2``. Q tables are padded to ``[num_states, max_actions]`` and
``legal_action_mask`` marks which entries are real actions (``A`` has 2 actions, ``B`` has
``num_b_actions``, ``TERMINAL`` none).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

STATE_A = 0
STATE_B = 1
STATE_TERMINAL = 2
NUM_STATES = 3

ACTION_LEFT = 0  # In A: go to B.
ACTION_RIGHT = 1  # In A: terminate.


@dataclasses.dataclass(frozen=True)
class MaxBiasMDP:
    """Parameters of the maximization-bias MDP (Sutton & Barto 2018, Example 6.7).

    Frozen and hashable, so it can be closed over or passed as a static argument to ``jax.jit``.
    All methods are pure functions of their array arguments and can be ``jax.vmap``-ped.

    Attributes:
      num_b_actions: number of actions in state ``B`` (>= 1); S&B use 10.
      reward_mean: mean of the reward of every action in ``B``; S&B use -0.1.
      reward_std: standard deviation of that reward (>= 0); S&B use 1.
    """

    num_b_actions: int = 10
    reward_mean: float = -0.1
    reward_std: float = 1.0

    def __post_init__(self):
        n = self.num_b_actions
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"num_b_actions must be an integer >= 1, got {n!r}.")
        for name in ("reward_mean", "reward_std"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a finite Python number, got {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}.")
        if self.reward_std < 0:
            raise ValueError(f"reward_std must be >= 0, got {self.reward_std!r}.")

    @property
    def num_states(self) -> int:
        """Number of states including the absorbing terminal state (3)."""
        return NUM_STATES

    @property
    def max_actions(self) -> int:
        """Width of the padded Q table: ``max(2, num_b_actions)``."""
        return max(2, self.num_b_actions)

    @property
    def num_actions_per_state(self) -> tuple[int, ...]:
        """Number of legal actions in ``(A, B, TERMINAL)``: ``(2, num_b_actions, 0)``."""
        return (2, self.num_b_actions, 0)

    @property
    def max_episode_length(self) -> int:
        """Every episode terminates after at most 2 steps (A -> B -> terminal)."""
        return 2

    @property
    def legal_action_mask(self) -> jax.Array:
        """Bool ``[num_states, max_actions]``; row ``s`` marks the legal actions of state ``s``."""
        counts = jnp.asarray(self.num_actions_per_state)
        return jnp.arange(self.max_actions)[None, :] < counts[:, None]

    def reset(self) -> jax.Array:
        """Initial state: ``A`` as an int32 scalar."""
        return jnp.asarray(STATE_A, dtype=jnp.int32)

    def step(
        self, key: jax.Array, state: jax.Array, action: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """One transition of the MDP (Sutton & Barto 2018, Example 6.7).

        Args:
          key: PRNG key for the reward noise in ``B``.
          state: int scalar ``[]``, the current state.
          action: int scalar ``[]``, a legal action of ``state`` (see ``legal_action_mask``).
            Illegal actions are not checked inside jitted code: in ``A`` any action other than
            ``ACTION_LEFT`` acts as ``ACTION_RIGHT``, in ``B`` every action acts alike.

        Returns:
          ``(next_state, reward, terminated)``: int32 ``[]``, float32 ``[]``, bool ``[]``.
          Stepping the absorbing terminal state leaves it there with reward 0 and
          ``terminated=True``.
        """
        state = jnp.asarray(state, jnp.int32)
        action = jnp.asarray(action, jnp.int32)
        noise = jax.random.normal(key, (), dtype=jnp.float32)
        b_reward = jnp.float32(self.reward_mean) + jnp.float32(self.reward_std) * noise
        in_a = state == STATE_A
        in_b = state == STATE_B
        go_left = in_a & (action == ACTION_LEFT)
        next_state = jnp.where(go_left, STATE_B, STATE_TERMINAL).astype(jnp.int32)
        reward = jnp.where(in_b, b_reward, jnp.float32(0.0))
        terminated = next_state == STATE_TERMINAL
        return next_state, reward, terminated
