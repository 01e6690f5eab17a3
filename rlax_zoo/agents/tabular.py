"""Tabular Q-learning and double Q-learning, and the maximization-bias experiment.

Papers:
  - van Hasselt (2010), "Double Q-learning", NeurIPS, Algorithm 1.
  - Sutton & Barto (2018), "Reinforcement Learning: An Introduction", 2nd ed., Section 6.7:
    Q-learning (eq. 6.8), double Q-learning (eq. 6.10), Example 6.7 and Figure 6.5.

Everything here is a pure function of explicit arrays and PRNG keys, written for one run
(unbatched) and batched with ``jax.vmap``. Q tables are padded to ``[num_states, max_actions]``
and every max/argmax takes a bool legal-action mask, so illegal (padding) actions are never
chosen and never bootstrapped from. Greedy choices break ties uniformly at random: with
all-zero initial Q tables, a first-index argmax would systematically favour one action and
distort the maximization-bias curves (Sutton & Barto break ties randomly too).

Example (S&B Figure 6.5, 1,000 runs)::

    keys = jax.random.split(jax.random.key(0), 1000)
    run = lambda k: run_maximization_bias(k, "double_q_learning", num_episodes=300)
    left_fraction = jax.vmap(run)(keys).mean(axis=0)  # [300]
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp

from rlax_zoo.envs.tabular import ACTION_LEFT, MaxBiasMDP

ALGORITHMS = ("q_learning", "double_q_learning")

Scalar = float | jax.Array


def _check_interval(
    name: str, value, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    """Raises ValueError unless ``value`` lies in the interval; traced values are not checked."""
    if isinstance(value, jax.core.Tracer):
        return
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a real number, got {value!r}.") from None
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if math.isnan(number) or too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}.")


def random_argmax(key: jax.Array, values: jax.Array, legal_mask: jax.Array) -> jax.Array:
    """Index of a maximal legal entry of ``values``, ties broken uniformly at random.

    Args:
      key: PRNG key.
      values: float ``[A]``.
      legal_mask: bool ``[A]``; only entries marked True can be returned.

    Returns:
      int32 ``[]``. If no entry is legal the result is 0 (callers mask it out).
    """
    chex.assert_rank([values, legal_mask], 1)
    chex.assert_equal_shape([values, legal_mask])
    best = jnp.max(jnp.where(legal_mask, values, -jnp.inf))
    is_best = legal_mask & (values == best)
    noise = jax.random.uniform(key, values.shape)
    return jnp.argmax(jnp.where(is_best, noise, -1.0)).astype(jnp.int32)


def epsilon_greedy(
    key: jax.Array, values: jax.Array, legal_mask: jax.Array, epsilon: Scalar
) -> jax.Array:
    """Epsilon-greedy action (Sutton & Barto 2018, Section 2.2 / 6.5).

    With probability ``epsilon`` a uniformly random legal action, otherwise a greedy legal action
    with ties broken uniformly at random. (The random action may itself be greedy, so a state with
    ``n`` legal actions picks a given non-greedy action with probability ``epsilon / n``.)

    Args:
      key: PRNG key.
      values: float ``[A]`` action values of the current state.
      legal_mask: bool ``[A]``.
      epsilon: exploration probability in ``[0, 1]``.

    Returns:
      int32 ``[]``.
    """
    _check_interval("epsilon", epsilon, 0.0, 1.0)
    explore_key, random_key, greedy_key = jax.random.split(key, 3)
    explore = jax.random.uniform(explore_key) < epsilon
    random_action = random_argmax(random_key, jnp.zeros_like(values), legal_mask)
    greedy_action = random_argmax(greedy_key, values, legal_mask)
    return jnp.where(explore, random_action, greedy_action)


def q_learning_update(
    q: jax.Array,
    s: jax.Array,
    a: jax.Array,
    r: Scalar,
    discount: Scalar,
    s_next: jax.Array,
    legal_next: jax.Array,
    step_size: Scalar,
) -> jax.Array:
    """One tabular Q-learning update (Watkins 1989; Sutton & Barto 2018, eq. 6.8).

        Q(s, a) <- Q(s, a) + alpha * (r + gamma * max_{a' legal} Q(s', a') - Q(s, a))

    Pass ``discount = 0`` on a terminal transition so nothing is bootstrapped from ``s'``
    (pass the real discount on a truncation). A state with no legal action has value 0.

    Args:
      q: float ``[S, A]`` Q table.
      s, a: int ``[]`` state and action of the transition.
      r: float ``[]`` reward.
      discount: float ``[]`` gamma in ``[0, 1]``; 0 on termination.
      s_next: int ``[]`` next state.
      legal_next: bool ``[A]`` legal actions of ``s_next``.
      step_size: alpha in ``(0, 1]``.

    Returns:
      The updated Q table, float ``[S, A]``; only entry ``(s, a)`` changes.
    """
    chex.assert_rank([q, legal_next], [2, 1])
    chex.assert_axis_dimension(legal_next, 0, q.shape[1])
    _check_interval("discount", discount, 0.0, 1.0)
    _check_interval("step_size", step_size, 0.0, 1.0, low_open=True)
    next_values = jnp.where(legal_next, q[s_next], -jnp.inf)
    bootstrap = jnp.where(jnp.any(legal_next), jnp.max(next_values), 0.0)
    target = r + discount * bootstrap
    td_error = target - q[s, a]
    return q.at[s, a].add(step_size * td_error)


def _double_q_half_update(
    tie_key, q_update, q_evaluate, s, a, r, discount, s_next, legal_next, step_size
):
    """Updates ``q_update`` towards ``r + gamma q_evaluate(s', argmax_a' q_update(s', a'))``."""
    best_next = random_argmax(tie_key, q_update[s_next], legal_next)
    bootstrap = jnp.where(jnp.any(legal_next), q_evaluate[s_next, best_next], 0.0)
    target = r + discount * bootstrap
    return q_update.at[s, a].add(step_size * (target - q_update[s, a]))


def double_q_learning_update(
    key: jax.Array,
    q_a: jax.Array,
    q_b: jax.Array,
    s: jax.Array,
    a: jax.Array,
    r: Scalar,
    discount: Scalar,
    s_next: jax.Array,
    legal_next: jax.Array,
    step_size: Scalar,
    update_a: jax.Array | bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One tabular double Q-learning update (van Hasselt 2010, Algorithm 1; S&B eq. 6.10).

    With probability 1/2 (``update_a``) update table A, otherwise table B::

        UPDATE(A):  a* = argmax_{a' legal} Q^A(s', a')
                    Q^A(s, a) <- Q^A(s, a) + alpha * (r + gamma * Q^B(s', a*) - Q^A(s, a))
        UPDATE(B):  b* = argmax_{a' legal} Q^B(s', a')
                    Q^B(s, a) <- Q^B(s, a) + alpha * (r + gamma * Q^A(s', b*) - Q^B(s, a))

    The argmax breaks ties uniformly at random. Pass ``discount = 0`` on a terminal transition
    (no bootstrap). A state with no legal action has value 0.

    Args:
      key: PRNG key for the coin flip (when ``update_a`` is None) and the argmax tie-break.
      q_a, q_b: float ``[S, A]`` the two Q tables.
      s, a: int ``[]`` state and action of the transition.
      r: float ``[]`` reward.
      discount: float ``[]`` gamma in ``[0, 1]``; 0 on termination.
      s_next: int ``[]`` next state.
      legal_next: bool ``[A]`` legal actions of ``s_next``.
      step_size: alpha in ``(0, 1]``.
      update_a: optional bool ``[]`` fixing the coin: True updates Q^A, False updates Q^B.

    Returns:
      ``(q_a, q_b)``, float ``[S, A]`` each; exactly one entry of one table changes.
    """
    chex.assert_rank([q_a, q_b, legal_next], [2, 2, 1])
    chex.assert_equal_shape([q_a, q_b])
    chex.assert_axis_dimension(legal_next, 0, q_a.shape[1])
    _check_interval("discount", discount, 0.0, 1.0)
    _check_interval("step_size", step_size, 0.0, 1.0, low_open=True)
    coin_key, tie_key = jax.random.split(key)
    if update_a is None:
        update_a = jax.random.bernoulli(coin_key, 0.5)
    args = (s, a, r, discount, s_next, legal_next, step_size)
    new_a = _double_q_half_update(tie_key, q_a, q_b, *args)
    new_b = _double_q_half_update(tie_key, q_b, q_a, *args)
    return jnp.where(update_a, new_a, q_a), jnp.where(update_a, q_b, new_b)


@functools.partial(jax.jit, static_argnames=("algorithm", "num_episodes", "num_b_actions"))
def _run_maximization_bias(
    key, epsilon, step_size, discount, *, algorithm, num_episodes, num_b_actions
):
    mdp = MaxBiasMDP(num_b_actions=num_b_actions)
    legal = mdp.legal_action_mask  # [S, A]
    q0 = jnp.zeros((mdp.num_states, mdp.max_actions), jnp.float32)
    double = algorithm == "double_q_learning"
    tables = (q0, q0) if double else q0

    def behaviour_values(tables):
        # S&B Section 6.7: double Q-learning acts epsilon-greedily on Q^A + Q^B.
        return tables[0] + tables[1] if double else tables

    def update(key, tables, s, a, r, gamma, s_next):
        args = (s, a, r, gamma, s_next, legal[s_next], step_size)
        if double:
            return double_q_learning_update(key, *tables, *args)
        return q_learning_update(tables, *args)

    def env_step(carry, key):
        tables, s, done = carry
        act_key, env_key, update_key = jax.random.split(key, 3)
        a = epsilon_greedy(act_key, behaviour_values(tables)[s], legal[s], epsilon)
        s_next, r, terminated = mdp.step(env_key, s, a)
        gamma = jnp.where(terminated, 0.0, discount)
        new_tables = update(update_key, tables, s, a, r, gamma, s_next)
        # Steps after the end of the episode (fixed-length scan) change nothing.
        tables = jax.tree.map(lambda new, old: jnp.where(done, old, new), new_tables, tables)
        return (tables, jnp.where(done, s, s_next), done | terminated), a

    def episode(tables, key):
        keys = jax.random.split(key, mdp.max_episode_length)
        carry = (tables, mdp.reset(), jnp.asarray(False))
        (tables, _, _), actions = jax.lax.scan(env_step, carry, keys)
        return tables, actions[0] == ACTION_LEFT

    _, went_left = jax.lax.scan(episode, tables, jax.random.split(key, num_episodes))
    return went_left


def run_maximization_bias(
    key: jax.Array,
    algorithm: str,
    num_episodes: int,
    epsilon: Scalar = 0.1,
    step_size: Scalar = 0.1,
    discount: Scalar = 1.0,
    num_b_actions: int = 10,
) -> jax.Array:
    """One run of the maximization-bias experiment (Sutton & Barto 2018, Example 6.7, Fig. 6.5).

    Starts from all-zero Q tables and runs ``num_episodes`` episodes of the MDP in
    ``rlax_zoo.envs.tabular.MaxBiasMDP``, acting epsilon-greedily (on Q for Q-learning, on
    Q^A + Q^B for double Q-learning) and updating online after every step with
    ``q_learning_update`` (S&B eq. 6.8) or ``double_q_learning_update`` (van Hasselt 2010,
    Algorithm 1). Jitted (static: ``algorithm``, ``num_episodes``, ``num_b_actions``); batch
    runs with ``jax.vmap`` over keys. The epsilon-greedy optimum takes ``left`` with probability
    ``epsilon / 2``.

    Args:
      key: PRNG key of the run.
      algorithm: ``"q_learning"`` or ``"double_q_learning"``.
      num_episodes: number of episodes, >= 1.
      epsilon: exploration probability in ``[0, 1]``.
      step_size: alpha in ``(0, 1]``.
      discount: gamma in ``[0, 1]``.
      num_b_actions: number of actions in state B, >= 1.

    Returns:
      bool ``[num_episodes]``: whether the first action of each episode (taken in A) was left.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}.")
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"num_episodes must be an integer >= 1, got {num_episodes!r}.")
    MaxBiasMDP(num_b_actions=num_b_actions)  # Validates num_b_actions.
    _check_interval("epsilon", epsilon, 0.0, 1.0)
    _check_interval("step_size", step_size, 0.0, 1.0, low_open=True)
    _check_interval("discount", discount, 0.0, 1.0)
    return _run_maximization_bias(
        key,
        epsilon,
        step_size,
        discount,
        algorithm=algorithm,
        num_episodes=num_episodes,
        num_b_actions=num_b_actions,
    )
