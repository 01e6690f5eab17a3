"""Tests for the Wang et al. 2016 corridor MDP and its exact policy evaluation."""

import numpy as np
import pytest

from rlax_zoo.envs import corridor

GAMMA = 0.99


@pytest.mark.parametrize("num_actions", [5, 10, 20])
def test_exact_q_satisfies_bellman_equation(num_actions):
    mdp, policy, q = corridor.policy_evaluation_problem(num_actions, epsilon=0.001)
    np.testing.assert_allclose(corridor.bellman_backup(mdp, policy, q), q, atol=1e-12)
    # And an independent check: iterating the backup from zero converges to the same Q.
    q_iter = np.zeros_like(q)
    for _ in range(3000):
        q_iter = corridor.bellman_backup(mdp, policy, q_iter)
    np.testing.assert_allclose(q_iter, q, atol=1e-9)


def test_geometry():
    mdp = corridor.make_corridor(5)
    assert mdp.next_state.shape == (71, 5) and mdp.reward.shape == (71, 5)
    assert np.flatnonzero(mdp.terminal).tolist() == [69, 70]
    np.testing.assert_array_equal(
        mdp.coords[[0, 9, 10, 59, 60, 69, 70]],
        [[0, 0], [0, 9], [1, 9], [50, 9], [50, 10], [50, 19], [0, 10]],
    )
    # Walls: down at the start and the no-op stay put; up moves along the corridor.
    assert mdp.next_state[0, corridor.DOWN] == 0 and mdp.next_state[0, corridor.NOOP] == 0
    assert mdp.next_state[0, corridor.UP] == 1
    # Extra actions are no-ops.
    mdp20 = corridor.make_corridor(20)
    np.testing.assert_array_equal(mdp20.next_state[:, 4:], np.arange(71)[:, None].repeat(16, 1))
    assert np.all(mdp20.reward[:, 4:] == 0)


def test_hand_checkable_values():
    mdp, policy, q = corridor.policy_evaluation_problem(5, epsilon=0.001)
    s = 68  # one step below the goal, at (50, 18)
    assert q[s, corridor.UP] == 10.0  # arriving at the goal: reward 10, then terminal
    v = policy[s] @ q[s]
    # Left, right (walls) and no-op stay put: Q = gamma * V(s).
    np.testing.assert_allclose(q[s, [corridor.LEFT, corridor.RIGHT, corridor.NOOP]], GAMMA * v)
    np.testing.assert_allclose(q[s, corridor.DOWN], GAMMA * policy[67] @ q[67])
    # Solve the 1-state equation by hand: V = (1-e+e/5) 10 + e/5 (3 g V + g V(67)).
    eps = 0.001
    v67 = policy[67] @ q[67]
    v_hand = ((1 - eps + eps / 5) * 10 + eps / 5 * GAMMA * v67) / (1 - 3 * eps / 5 * GAMMA)
    np.testing.assert_allclose(v, v_hand, rtol=1e-12)
    # The dead end above the left section gives the small reward.
    assert q[9, corridor.UP] == 1.0
    assert np.all(q[mdp.terminal] == 0)


def test_greedy_evaluation_matches_optimal_q():
    mdp = corridor.make_corridor(10)
    q_star = corridor.optimal_q(mdp)
    q_greedy = corridor.evaluate_policy(mdp, corridor.epsilon_greedy(q_star, 0.0))
    np.testing.assert_allclose(q_greedy, q_star, atol=1e-9)
    # Deterministic optimal path: 69 steps from the start, reward on the last one.
    np.testing.assert_allclose(q_star[0, corridor.UP], 10 * GAMMA**68)
    np.testing.assert_allclose(q_star[0, corridor.NOOP], 10 * GAMMA**69)
    assert np.all(np.argmax(q_star[:9], axis=1) == corridor.UP)
    assert np.all(np.argmax(q_star[9:59], axis=1) == corridor.RIGHT)
    assert np.all(np.argmax(q_star[59:69], axis=1) == corridor.UP)


def test_state_visitation():
    mdp, policy, _ = corridor.policy_evaluation_problem(5, epsilon=0.001)
    visits = corridor.state_visitation(mdp, policy)
    assert np.all(visits[mdp.terminal] == 0)
    assert np.all(visits[~mdp.terminal] >= 1.0)  # every path state is on the greedy path
    # Greedy policy: each of the 69 non-terminal states exactly once.
    greedy = corridor.epsilon_greedy(corridor.optimal_q(mdp), 0.0)
    np.testing.assert_allclose(corridor.state_visitation(mdp, greedy)[~mdp.terminal], 1.0)
    # Flow balance: visits = start + inflow from non-terminal states.
    inflow = np.zeros(71)
    np.add.at(
        inflow, mdp.next_state[~mdp.terminal], visits[~mdp.terminal, None] * policy[~mdp.terminal]
    )
    inflow[0] += 1.0
    np.testing.assert_allclose(visits[~mdp.terminal], inflow[~mdp.terminal], rtol=1e-10)


def test_epsilon_greedy_policy_rows():
    q = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0]])
    pi = corridor.epsilon_greedy(q, 0.3)
    np.testing.assert_allclose(pi, [[0.1, 0.8, 0.1], [0.8, 0.1, 0.1]])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_actions"):
        corridor.make_corridor(4)
    with pytest.raises(ValueError, match="discount"):
        corridor.make_corridor(5, discount=1.0)
    with pytest.raises(ValueError, match="epsilon"):
        corridor.epsilon_greedy(np.zeros((2, 5)), 1.5)
    mdp = corridor.make_corridor(5)
    with pytest.raises(ValueError, match="policy"):
        corridor.evaluate_policy(mdp, np.ones((71, 4)) / 4)
