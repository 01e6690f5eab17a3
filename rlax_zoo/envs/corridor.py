"""The corridor MDP of Wang et al. 2016 (Section 4.1, Fig. 3a) and exact policy evaluation.

Wang et al. 2016, "Dueling Network Architectures for Deep RL", Section 4.1: three connected
corridors, two vertical sections of 10 states and a horizontal section of 50; the agent starts
in the bottom-left corner and must reach the top right for the largest reward; a smaller
reward state also ends the episode; actions up, down, left, right, no-op, plus any number of
extra no-ops. The paper gives neither the rewards, the discount nor the exact place of the
small reward, so this module fixes them as follows (all configurable):

    y
   19                                                      G   <- goal, reward 10, terminal
   ..                                                      |      (right section, 10 cells
   10  D                                                   |       x = 50, y = 10..19)
    9  +---------------------------------------------------+   <- horizontal section, 50 cells
   ..  |                                                          (x = 1..50, y = 9)
    0  S   <- start (left section, 10 cells: x = 0, y = 0..9)
       x=0                                                x=50

  * D is a dead end one step above the top of the left section, with reward 1 on arrival,
    terminal (the "smaller reward elsewhere").
  * Rewards are received on arrival in a terminal state; every other transition gives 0.
  * Moving into a wall leaves the agent where it is (like a no-op), reward 0.
  * Discount 0.99, so at the start the goal (69 steps away, 10 * 0.99**68 ~= 5.0) beats the
    dead end (10 steps away, 0.99**9 ~= 0.91) and the optimal policy follows the corridor.

States are numbered 0..S-1 along the path (0 = start, S-2 = goal), with the dead end last
(S - 1); S = 71 with the default lengths. Actions: 0 up, 1 down, 2 left, 3 right, 4 no-op,
5..num_actions-1 extra no-ops. Transitions are deterministic, so the MDP is two arrays
`next_state[S, A]` and `reward[S, A]`; terminal states are absorbing with value 0.

Pure NumPy (vendorable); JAX code can index the arrays directly.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

UP, DOWN, LEFT, RIGHT, NOOP = 0, 1, 2, 3, 4
_MOVES = {UP: (0, 1), DOWN: (0, -1), LEFT: (-1, 0), RIGHT: (1, 0)}


class CorridorMDP(NamedTuple):
    """A deterministic tabular MDP with S states and A actions."""

    next_state: np.ndarray  # [S, A] int32: successor of (s, a)
    reward: np.ndarray  # [S, A] float64: reward received on the transition (s, a)
    terminal: np.ndarray  # [S] bool: absorbing states (value 0, excluded from the error)
    coords: np.ndarray  # [S, 2] int32: (x, y) grid cell of each state
    start_state: int
    discount: float


def make_corridor(
    num_actions: int = 5,
    lengths: tuple[int, int, int] = (10, 50, 10),
    goal_reward: float = 10.0,
    small_reward: float = 1.0,
    discount: float = 0.99,
) -> CorridorMDP:
    """Builds the corridor (module docstring) with `num_actions` >= 5 (extra ones are no-ops).

    Args:
      num_actions: total number of actions; actions 4.. are all no-ops.
      lengths: cells in the left (vertical), middle (horizontal) and right (vertical) section.
      goal_reward: reward on arriving at the top-right end (terminal).
      small_reward: reward on arriving at the dead end above the left section (terminal).
      discount: gamma in [0, 1).
    Returns:
      CorridorMDP with S = sum(lengths) + 1 states.
    """
    if num_actions < 5:
        raise ValueError(
            f"num_actions must be >= 5 (up, down, left, right, no-op), got {num_actions}"
        )
    if len(lengths) != 3 or min(lengths) < 1:
        raise ValueError(f"lengths must be three positive section lengths, got {lengths}")
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount must be in [0, 1), got {discount}")
    left, middle, right = lengths
    cells = [(0, y) for y in range(left)]
    top = left - 1
    cells += [(x, top) for x in range(1, middle + 1)]
    cells += [(middle, top + y) for y in range(1, right + 1)]
    goal = len(cells) - 1
    cells.append((0, top + 1))  # dead end with the small reward
    dead_end = len(cells) - 1
    index = {c: i for i, c in enumerate(cells)}
    num_states = len(cells)

    terminal = np.zeros(num_states, bool)
    terminal[[goal, dead_end]] = True
    next_state = np.tile(np.arange(num_states, dtype=np.int32)[:, None], (1, num_actions))
    reward = np.zeros((num_states, num_actions))
    for s, (x, y) in enumerate(cells):
        if terminal[s]:
            continue
        for a, (dx, dy) in _MOVES.items():
            s_next = index.get((x + dx, y + dy), s)
            next_state[s, a] = s_next
            reward[s, a] = (
                goal_reward if s_next == goal else small_reward if s_next == dead_end else 0.0
            )
    return CorridorMDP(
        next_state=next_state,
        reward=reward,
        terminal=terminal,
        coords=np.asarray(cells, np.int32),
        start_state=0,
        discount=float(discount),
    )


def bellman_backup(mdp: CorridorMDP, policy: np.ndarray, q: np.ndarray) -> np.ndarray:
    """One expected (SARSA) Bellman backup: (T^pi Q)(s, a) = r(s, a) + g sum_a' pi(a'|s') Q(s', a').

    Sutton & Barto 2018, eq. (3.17) / van Seijen et al. 2009 (Expected SARSA target).
    Args:
      policy: [S, A] action probabilities; q: [S, A]. Terminal rows of the result are 0.
    """
    v = np.sum(policy * q, axis=-1)
    backed = mdp.reward + mdp.discount * v[mdp.next_state]
    return np.where(mdp.terminal[:, None], 0.0, backed)


def evaluate_policy(mdp: CorridorMDP, policy: np.ndarray) -> np.ndarray:
    """Exact Q^pi [S, A]: solves V = r_pi + g P_pi V, then Q = r + g V[s'] (Bellman eq. 3.14).

    Terminal states are absorbing with value 0 (their rows of Q are 0).
    Args:
      policy: [S, A] action probabilities (rows sum to 1).
    """
    num_states, num_actions = mdp.reward.shape
    if policy.shape != (num_states, num_actions):
        raise ValueError(f"policy must have shape {(num_states, num_actions)}, got {policy.shape}")
    live = ~mdp.terminal
    p_pi = np.zeros((num_states, num_states))
    np.add.at(p_pi, (np.arange(num_states)[:, None], mdp.next_state), policy)
    p_pi[~live] = 0.0  # absorbing, zero value
    r_pi = np.where(live, np.sum(policy * mdp.reward, axis=-1), 0.0)
    v = np.linalg.solve(np.eye(num_states) - mdp.discount * p_pi, r_pi)
    return np.where(live[:, None], mdp.reward + mdp.discount * v[mdp.next_state], 0.0)


def state_visitation(mdp: CorridorMDP, policy: np.ndarray) -> np.ndarray:
    """Expected visits [S] to each state in one episode of `policy` from the start state.

    d = e_start + P_pi^T d over non-terminal states (terminal states: 0), i.e. the undiscounted
    occupancy; normalised, it is the state distribution of transitions generated by pi.
    """
    num_states = mdp.reward.shape[0]
    live = ~mdp.terminal
    p_pi = np.zeros((num_states, num_states))
    np.add.at(p_pi, (np.arange(num_states)[:, None], mdp.next_state), policy)
    p_live = p_pi[np.ix_(live, live)]
    start = np.zeros(num_states)
    start[mdp.start_state] = 1.0
    visits = np.zeros(num_states)
    visits[live] = np.linalg.solve(np.eye(live.sum()) - p_live.T, start[live])
    return visits


def optimal_q(mdp: CorridorMDP, tol: float = 1e-12, max_iters: int = 100_000) -> np.ndarray:
    """Q* [S, A] by value iteration (Bellman optimality, Sutton & Barto eq. 3.20)."""
    q = np.zeros(mdp.reward.shape)
    for _ in range(max_iters):
        v = q.max(axis=-1)
        new_q = np.where(mdp.terminal[:, None], 0.0, mdp.reward + mdp.discount * v[mdp.next_state])
        if np.max(np.abs(new_q - q)) < tol:
            return new_q
        q = new_q
    raise RuntimeError("value iteration did not converge")


def epsilon_greedy(q: np.ndarray, epsilon: float) -> np.ndarray:
    """[S, A] probabilities: argmax_a q(s, a) w.p. 1 - epsilon, uniform over all A w.p. epsilon.

    Ties go to the lowest action index (np.argmax), so the greedy action is never an extra no-op.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    num_actions = q.shape[-1]
    policy = np.full(q.shape, epsilon / num_actions)
    policy[np.arange(q.shape[0]), np.argmax(q, axis=-1)] += 1.0 - epsilon
    return policy


def policy_evaluation_problem(num_actions: int = 5, epsilon: float = 0.001, **kwargs):
    """The Section 4.1 problem: (mdp, pi, Q^pi) with pi epsilon-greedy around Q*."""
    mdp = make_corridor(num_actions, **kwargs)
    policy = epsilon_greedy(optimal_q(mdp), epsilon)
    return mdp, policy, evaluate_policy(mdp, policy)
