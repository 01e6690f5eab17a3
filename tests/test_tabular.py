"""Tests for the maximization-bias MDP and tabular (double) Q-learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlax_zoo.agents import tabular as agents
from rlax_zoo.envs import tabular as envs

LEGAL_ALL = jnp.ones(3, dtype=bool)
NO_LEGAL = jnp.zeros(3, dtype=bool)

# A 3x3 table for hand-computed updates; rows are states, columns actions.
Q_A = jnp.array([[1.0, 2.0, 0.0], [3.0, 5.0, 4.0], [0.0, 0.0, 0.0]])
Q_B = jnp.array([[-1.0, 0.5, 0.0], [10.0, 6.0, 7.0], [0.0, 0.0, 0.0]])


# ----------------------------------------------------------------------------- environment


def test_mdp_shapes_and_mask():
    mdp = envs.MaxBiasMDP(num_b_actions=4)
    assert mdp.num_states == 3
    assert mdp.max_actions == 4
    assert mdp.num_actions_per_state == (2, 4, 0)
    np.testing.assert_array_equal(
        mdp.legal_action_mask,
        [[True, True, False, False], [True, True, True, True], [False, False, False, False]],
    )
    # One B action still leaves room for A's two actions.
    mdp1 = envs.MaxBiasMDP(num_b_actions=1)
    assert mdp1.max_actions == 2
    np.testing.assert_array_equal(mdp1.legal_action_mask, [[True, True], [True, False], [0, 0]])


def test_mdp_transitions():
    mdp = envs.MaxBiasMDP(reward_mean=-0.1, reward_std=0.0)
    key = jax.random.key(0)
    s = mdp.reset()
    assert int(s) == envs.STATE_A
    s1, r, term = mdp.step(key, s, envs.ACTION_LEFT)
    assert (int(s1), float(r), bool(term)) == (envs.STATE_B, 0.0, False)
    s1, r, term = mdp.step(key, s, envs.ACTION_RIGHT)
    assert (int(s1), float(r), bool(term)) == (envs.STATE_TERMINAL, 0.0, True)
    for b in range(10):
        s1, r, term = mdp.step(key, envs.STATE_B, b)
        assert int(s1) == envs.STATE_TERMINAL and bool(term)
        np.testing.assert_allclose(r, -0.1, rtol=1e-6)
    s1, r, term = mdp.step(key, envs.STATE_TERMINAL, 0)
    assert (int(s1), float(r), bool(term)) == (envs.STATE_TERMINAL, 0.0, True)


def test_mdp_b_reward_distribution():
    mdp = envs.MaxBiasMDP()
    keys = jax.random.split(jax.random.key(1), 20_000)
    _, rewards, _ = jax.vmap(mdp.step, in_axes=(0, None, None))(keys, envs.STATE_B, 3)
    # Mean -0.1 +- 5 standard errors (1/sqrt(20000) ~ 0.007); std 1 +- 0.03.
    assert abs(float(rewards.mean()) + 0.1) < 0.035
    assert abs(float(rewards.std()) - 1.0) < 0.03


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_b_actions": 0}, "num_b_actions must be an integer >= 1"),
        ({"num_b_actions": 2.5}, "num_b_actions must be an integer >= 1"),
        ({"num_b_actions": True}, "num_b_actions must be an integer >= 1"),
        ({"reward_std": -0.5}, "reward_std must be >= 0"),
        ({"reward_std": float("nan")}, "reward_std must be finite"),
        ({"reward_mean": float("inf")}, "reward_mean must be finite"),
    ],
)
def test_mdp_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        envs.MaxBiasMDP(**kwargs)


# ----------------------------------------------------------------------------- updates


def test_q_learning_update_hand_computed():
    # Target: r + gamma * max(3, 5, 4) = 1 + 0.5 * 5 = 3.5; Q(0,1) = 2 + 0.1 * (3.5 - 2) = 2.15.
    q = agents.q_learning_update(Q_A, 0, 1, 1.0, 0.5, 1, LEGAL_ALL, 0.1)
    np.testing.assert_allclose(q[0, 1], 2.15, rtol=1e-6)
    np.testing.assert_array_equal(q.at[0, 1].set(Q_A[0, 1]), Q_A)  # Nothing else moved.


def test_q_learning_update_respects_legal_mask():
    # With action 1 (value 5) illegal the max is 4: target 1 + 0.5 * 4 = 3; 2 + 0.1 * 1 = 2.1.
    legal = jnp.array([True, False, True])
    q = agents.q_learning_update(Q_A, 0, 1, 1.0, 0.5, 1, legal, 0.1)
    np.testing.assert_allclose(q[0, 1], 2.1, rtol=1e-6)


def test_q_learning_terminal_does_not_bootstrap():
    q_big = Q_A.at[2].set(1e6)  # Huge (wrong) values in the next state must be ignored.
    q = agents.q_learning_update(q_big, 1, 0, -1.0, 0.0, 2, LEGAL_ALL, 0.5)
    np.testing.assert_allclose(q[1, 0], 3.0 + 0.5 * (-1.0 - 3.0), rtol=1e-6)
    # A next state without legal actions has value 0, even with gamma > 0 (no NaN from -inf).
    q = agents.q_learning_update(q_big, 1, 0, -1.0, 1.0, 2, NO_LEGAL, 0.5)
    np.testing.assert_allclose(q[1, 0], 1.0, rtol=1e-6)


def test_double_q_update_a_hand_computed():
    # UPDATE(A): a* = argmax Q^A(1, .) = 1; target = 1 + 0.5 * Q^B(1, 1) = 1 + 3 = 4;
    # Q^A(0, 1) = 2 + 0.1 * (4 - 2) = 2.2. Q^B unchanged.
    qa, qb = agents.double_q_learning_update(
        jax.random.key(0), Q_A, Q_B, 0, 1, 1.0, 0.5, 1, LEGAL_ALL, 0.1, update_a=True
    )
    np.testing.assert_allclose(qa[0, 1], 2.2, rtol=1e-6)
    np.testing.assert_array_equal(qa.at[0, 1].set(Q_A[0, 1]), Q_A)
    np.testing.assert_array_equal(qb, Q_B)


def test_double_q_update_b_hand_computed():
    # UPDATE(B): b* = argmax Q^B(1, .) = 0; target = 1 + 0.5 * Q^A(1, 0) = 2.5;
    # Q^B(0, 1) = 0.5 + 0.1 * (2.5 - 0.5) = 0.7. Q^A unchanged.
    qa, qb = agents.double_q_learning_update(
        jax.random.key(0), Q_A, Q_B, 0, 1, 1.0, 0.5, 1, LEGAL_ALL, 0.1, update_a=False
    )
    np.testing.assert_allclose(qb[0, 1], 0.7, rtol=1e-6)
    np.testing.assert_array_equal(qb.at[0, 1].set(Q_B[0, 1]), Q_B)
    np.testing.assert_array_equal(qa, Q_A)


def test_double_q_terminal_does_not_bootstrap():
    qa_big, qb_big = Q_A.at[2].set(1e6), Q_B.at[2].set(-1e6)
    for update_a in (True, False):
        qa, qb = agents.double_q_learning_update(
            jax.random.key(0), qa_big, qb_big, 1, 2, 0.5, 0.0, 2, LEGAL_ALL, 1.0, update_a
        )
        updated = qa if update_a else qb
        np.testing.assert_allclose(updated[1, 2], 0.5, rtol=1e-6)  # alpha=1: Q = r exactly.


def test_double_q_coin_is_fair():
    keys = jax.random.split(jax.random.key(2), 10_000)
    update = lambda k: agents.double_q_learning_update(
        k, Q_A, Q_B, 0, 1, 1.0, 0.5, 1, LEGAL_ALL, 0.1
    )
    qa, _ = jax.jit(jax.vmap(update))(keys)
    frac_a = float(jnp.mean(qa[:, 0, 1] != Q_A[0, 1]))
    assert abs(frac_a - 0.5) < 5 * 0.005  # 5 standard errors of a fair coin over 10k flips.


def test_double_q_target_argmax_breaks_ties_uniformly():
    # Q^A(1, .) ties between actions 0 and 2; Q^B(1, .) = (10, 6, 7) evaluates them as 10 or 7.
    qa_tied = Q_A.at[1].set(jnp.array([4.0, 1.0, 4.0]))
    keys = jax.random.split(jax.random.key(3), 10_000)
    update = lambda k: agents.double_q_learning_update(
        k, qa_tied, Q_B, 0, 0, 0.0, 1.0, 1, LEGAL_ALL, 1.0, update_a=True
    )
    qa, _ = jax.jit(jax.vmap(update))(keys)
    values = np.asarray(qa[:, 0, 0])
    assert set(np.unique(values)) == {7.0, 10.0}
    assert abs(np.mean(values == 10.0) - 0.5) < 0.025


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(-10, 10, width=32), min_size=12, max_size=12),
    st.integers(0, 2),
    st.integers(0, 3),
    st.floats(-5, 5, width=32),
    st.floats(0, 1, width=32),
    st.floats(0.125, 1, width=32),
)
def test_q_learning_update_matches_numpy(values, s, a, r, discount, step_size):
    q = np.asarray(values, np.float32).reshape(3, 4)
    new_q = _jit_q_update(jnp.asarray(q), s, a, r, discount, 1, jnp.ones(4, bool), step_size)
    expected = q.copy()
    expected[s, a] += step_size * (r + discount * q[1].max() - q[s, a])
    np.testing.assert_allclose(new_q, expected, rtol=1e-5, atol=1e-5)


_jit_q_update = jax.jit(agents.q_learning_update)


# ----------------------------------------------------------------------------- action selection


def test_random_argmax_ties_uniform_and_legal():
    values = jnp.array([1.0, 3.0, 3.0, 0.0, 3.0, 9.0])
    legal = jnp.array([True, True, True, True, True, False])  # The 9 is illegal.
    keys = jax.random.split(jax.random.key(4), 30_000)
    actions = np.asarray(
        jax.jit(jax.vmap(agents.random_argmax, in_axes=(0, None, None)))(keys, values, legal)
    )
    counts = np.bincount(actions, minlength=6) / len(actions)
    np.testing.assert_array_equal(counts[[0, 3, 5]], 0.0)
    # Each tied action 1/3 +- 5 standard errors (sqrt(2/9 / 30000) ~ 0.0027).
    np.testing.assert_allclose(counts[[1, 2, 4]], 1 / 3, atol=0.014)


def test_epsilon_greedy_distribution():
    values = jnp.array([0.0, 1.0, 0.5, 7.0])
    legal = jnp.array([True, True, True, False])
    keys = jax.random.split(jax.random.key(5), 30_000)
    select = jax.jit(jax.vmap(agents.epsilon_greedy, in_axes=(0, None, None, None)))
    counts = np.bincount(np.asarray(select(keys, values, legal, 0.3)), minlength=4) / 30_000
    # Greedy action 1 w.p. 0.7 + 0.3/3 = 0.8; others 0.1 each; the illegal one never.
    np.testing.assert_allclose(counts, [0.1, 0.8, 0.1, 0.0], atol=0.012)
    assert np.all(np.asarray(select(keys, values, legal, 0.0)) == 1)


# ----------------------------------------------------------------------------- experiment


def test_run_is_jittable_and_deterministic():
    static = ("algorithm", "num_episodes", "num_b_actions")
    jitted = jax.jit(agents.run_maximization_bias, static_argnames=static)
    run = lambda key, epsilon: jitted(
        key, algorithm="double_q_learning", num_episodes=7, epsilon=epsilon, num_b_actions=3
    )
    left = run(jax.random.key(6), 0.1)  # epsilon is traced here: no recompile per value.
    assert left.shape == (7,) and left.dtype == jnp.bool_
    np.testing.assert_array_equal(run(jax.random.key(6), 0.1), left)


def test_maximization_bias_learning_curves():
    """S&B Figure 6.5 in miniature: 2000 runs x 300 episodes, epsilon = alpha = 0.1, gamma = 1.

    Measured (seed 0): Q-learning peaks at ~0.94 (episode ~20), mean 0.86 over episodes 1-50 and
    0.12 over the last 50; double Q-learning 0.28 over episodes 1-50 and 0.07 over the last 50.
    A fraction averaged over 2000 runs x 50 episodes has standard error below ~0.006, so the
    thresholds below sit many standard errors away from the measured values. The left fraction
    cannot fall below epsilon / 2 = 0.05 (random exploration alone), and double Q-learning is
    still approaching that optimum at episode 300, hence the 0.1 upper bound.
    """
    keys = jax.random.split(jax.random.key(0), 2000)
    curves = {}
    for algorithm in agents.ALGORITHMS:
        run = lambda k, algorithm=algorithm: agents.run_maximization_bias(k, algorithm, 300)
        curves[algorithm] = np.asarray(jax.jit(jax.vmap(run))(keys).mean(axis=0))
    q, dq = curves["q_learning"], curves["double_q_learning"]
    assert q[:50].mean() > dq[:50].mean() + 0.3
    assert q.max() > 0.6
    assert 0.045 < dq[-50:].mean() < 0.1
    assert q[-50:].mean() > dq[-50:].mean()
    assert abs(q[0] - 0.5) < 0.05 and abs(dq[0] - 0.5) < 0.05  # Ties at Q = 0: a coin flip.


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"algorithm": "sarsa"}, "algorithm must be one of"),
        ({"num_episodes": 0}, "num_episodes must be an integer >= 1"),
        ({"num_episodes": 3.0}, "num_episodes must be an integer >= 1"),
        ({"step_size": 0.0}, r"step_size must be in \(0.0, 1.0\]"),
        ({"step_size": 1.5}, r"step_size must be in \(0.0, 1.0\]"),
        ({"epsilon": -0.1}, r"epsilon must be in \[0.0, 1.0\]"),
        ({"epsilon": float("nan")}, r"epsilon must be in \[0.0, 1.0\]"),
        ({"discount": 1.01}, r"discount must be in \[0.0, 1.0\]"),
        ({"num_b_actions": 0}, "num_b_actions must be an integer >= 1"),
    ],
)
def test_run_validation(kwargs, match):
    args = {"key": jax.random.key(0), "algorithm": "q_learning", "num_episodes": 5} | kwargs
    with pytest.raises(ValueError, match=match):
        agents.run_maximization_bias(**args)


def test_update_validation():
    with pytest.raises(ValueError, match=r"step_size must be in \(0.0, 1.0\]"):
        agents.q_learning_update(Q_A, 0, 0, 0.0, 1.0, 1, LEGAL_ALL, 0.0)
    with pytest.raises(ValueError, match=r"discount must be in \[0.0, 1.0\]"):
        agents.double_q_learning_update(
            jax.random.key(0), Q_A, Q_B, 0, 0, 0.0, -1.0, 1, LEGAL_ALL, 0.1
        )
    with pytest.raises(ValueError, match=r"epsilon must be in \[0.0, 1.0\]"):
        agents.epsilon_greedy(jax.random.key(0), Q_A[0], LEGAL_ALL, 2.0)
