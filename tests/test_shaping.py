"""Potential-based shaping (Ng, Harada & Russell 1999): hand values, policy invariance on
random tabular MDPs, a cycle bonus that is not potential-based changing the optimal policy,
and the envpool wrapper against a NumPy reference on real CartPole-v1 episodes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.envs.envpool_env import make_vec_env, replay_actions
from rlax_zoo.envs.shaping_wrapper import ShapingState, shape_step, shape_vec_env
from rlax_zoo.shaping import potential_based_shaping, shaped_reward

f32 = jnp.float32


# ---------------------------------------------------------------- primitive: hand values


@pytest.mark.parametrize(
    "phi_tm1,phi_t,discount,expected",
    [
        (1.0, 2.0, 0.9, 0.9 * 2.0 - 1.0),  # ordinary step
        (1.5, 7.0, 0.0, -1.5),  # termination: Phi(terminal) = 0 whatever phi_t says
        (-2.0, 3.0, 0.99, 0.99 * 3.0 + 2.0),  # truncation: gamma and the real last potential
        (0.5, 0.5, 1.0, 0.0),  # gamma = 1, equal potentials
    ],
)
def test_potential_based_shaping_hand_values(phi_tm1, phi_t, discount, expected):
    f = potential_based_shaping(f32(phi_tm1), f32(phi_t), f32(discount))
    np.testing.assert_allclose(f, expected, rtol=1e-6)
    r = shaped_reward(f32(0.25), f32(phi_tm1), f32(phi_t), f32(discount))
    np.testing.assert_allclose(r, 0.25 + expected, rtol=1e-6)


def test_primitive_jit_vmap_and_checks():
    phi_tm1, phi_t = jnp.array([1.0, -1.0, 2.0]), jnp.array([0.0, 3.0, 4.0])
    discount = jnp.array([0.9, 0.0, 1.0])
    f = jax.jit(jax.vmap(potential_based_shaping))(phi_tm1, phi_t, discount)
    np.testing.assert_allclose(f, [-1.0, 1.0, 2.0], rtol=1e-6)
    r = jax.jit(jax.vmap(shaped_reward))(jnp.ones(3), phi_tm1, phi_t, discount)
    np.testing.assert_allclose(r, [0.0, 2.0, 3.0], rtol=1e-6)
    with pytest.raises(AssertionError):  # single stream: batch with vmap
        potential_based_shaping(phi_tm1, phi_t, discount)
    with pytest.raises(AssertionError):  # integer potentials are a caller bug
        potential_based_shaping(jnp.int32(1), f32(1.0), f32(0.9))


# ---------------------------------------------------------------- tabular value iteration


@functools.partial(jax.jit, static_argnames="num_iters")
def _value_iteration(p, r, disc, num_iters=600):
    """Q*[s, a] for transitions p[s, a, s'], rewards r[s, a, s'], discounts disc[s, a, s']."""

    def body(_, q):
        return jnp.einsum("ijk,ijk->ij", p, r + disc * jnp.max(q, axis=-1)[None, None, :])

    return jax.lax.fori_loop(0, num_iters, body, jnp.zeros(p.shape[:2], p.dtype))


def _shaping_table(phi, disc):
    """F[s, a, s'] = disc[s, a, s'] * phi[s'] - phi[s], through the single-stream primitive."""
    s, a, _ = disc.shape
    phi_tm1 = jnp.broadcast_to(phi[:, None, None], disc.shape)
    phi_t = jnp.broadcast_to(phi[None, None, :], disc.shape)
    f = jax.vmap(potential_based_shaping)(phi_tm1.ravel(), phi_t.ravel(), disc.ravel())
    return f.reshape(s, a, s)


NUM_MDPS, S, A, GAMMA = 300, 6, 3, 0.9


def _random_mdp(key):
    kp, kr, kt, kphi, kf = jax.random.split(key, 5)
    p = jax.nn.softmax(2.0 * jax.random.normal(kp, (S, A, S)), axis=-1)
    r = jax.random.normal(kr, (S, A, S))
    terminal = jax.random.bernoulli(kt, 0.3, (S,)).at[0].set(False)  # state 0 never terminal
    disc = jnp.broadcast_to(jnp.where(terminal, 0.0, GAMMA)[None, None, :], (S, A, S))
    # Phi is random on terminal states too: discount 0 on entering them is what makes
    # Phi(terminal) = 0, so the invariance must hold whatever phi says there.
    phi = 3.0 * jax.random.normal(kphi, (S,))
    random_f = 3.0 * jax.random.normal(kf, (S, A, S))
    return p, r, disc, terminal, phi, random_f


def _greedy_where_clear(q, gap=1e-6):
    top2 = jnp.sort(q, axis=-1)[..., -2:]
    return jnp.argmax(q, axis=-1), (top2[..., 1] - top2[..., 0]) > gap


def test_random_mdps_same_optimal_policy_and_q_shift():
    with jax.enable_x64(True):

        @jax.jit
        @jax.vmap
        def solve(key):
            p, r, disc, terminal, phi, random_f = _random_mdp(key)
            f = _shaping_table(phi, disc)
            q = _value_iteration(p, r, disc)
            q_shaped = _value_iteration(p, r + f, disc)
            # the same potentials without Phi(terminal) = 0 (gamma * Phi(s') on entering a
            # terminal state) and an arbitrary F: neither is potential-based
            f_no_term = GAMMA * phi[None, None, :] - phi[:, None, None]
            q_no_term = _value_iteration(p, r + f_no_term, disc)
            q_random = _value_iteration(p, r + random_f, disc)
            return q, q_shaped, q_no_term, q_random, phi, terminal, f

        keys = jax.random.split(jax.random.PRNGKey(0), NUM_MDPS)
        q, q_shaped, q_no_term, q_random, phi, terminal, f = jax.device_get(solve(keys))
    assert q.dtype == np.float64
    live = ~terminal[:, :, None]  # Q of terminal states is never used: entering them ends
    assert np.abs(f).mean() > 1.0  # the shaping is not a small perturbation

    # Theorem 1: Q'*(s, a) = Q*(s, a) - Phi(s) on every non-terminal state
    expected = q - phi[:, :, None]
    np.testing.assert_allclose(np.where(live, q_shaped, 0), np.where(live, expected, 0), atol=1e-5)

    # ... hence the same greedy (optimal) policy wherever the optimal action is not a tie
    greedy, clear = _greedy_where_clear(q)
    greedy_shaped, _ = _greedy_where_clear(q_shaped)
    compared = clear & ~terminal
    assert compared.sum() > 0.9 * (~terminal).sum()
    np.testing.assert_array_equal(greedy_shaped[compared], greedy[compared])

    # the test has power: shapings that are not potential-based change optimal policies
    def num_changed(q_other):
        return int(((jnp.argmax(q_other, axis=-1) != greedy) & compared).any(axis=-1).sum())

    assert num_changed(q_no_term) > NUM_MDPS // 10
    assert num_changed(q_random) > NUM_MDPS // 3


# ------------------------------------------- a cycle bonus (not potential-based) vs. Phi

# Path 0 -> 1 -> 2 -> GOAL (reward 1, terminal) with action FORWARD; in state 1 action DETOUR
# enters the cycle 1 -> 4 -> 5 -> 1 (both actions follow the cycle in 4 and 5); DETOUR in 0 and
# 2 stays put. Without shaping the agent walks straight to the goal.
FORWARD, DETOUR, GOAL = 0, 1, 3
NEXT = np.array(
    [
        [1, 0],  # 0
        [2, 4],  # 1
        [GOAL, 2],  # 2
        [GOAL, GOAL],  # GOAL (absorbing; never acted in)
        [5, 5],  # 4
        [1, 1],  # 5
    ]
)
CYCLE = [(1, DETOUR, 4), (4, FORWARD, 5), (4, DETOUR, 5), (5, FORWARD, 1), (5, DETOUR, 1)]


def _cycle_mdp():
    n = NEXT.shape[0]
    p = np.zeros((n, 2, n))
    p[np.arange(n)[:, None], np.arange(2)[None, :], NEXT] = 1.0
    r = np.zeros((n, 2, n))
    r[2, FORWARD, GOAL] = 1.0
    disc = np.where(np.arange(n) == GOAL, 0.0, GAMMA)[None, None, :] * np.ones((n, 2, 1))
    return jnp.asarray(p, f32), jnp.asarray(r, f32), jnp.asarray(disc, f32)


def _greedy_rollout(q, start=0, steps=60):
    s, visited = start, [start]
    for _ in range(steps):
        s = int(NEXT[s, int(jnp.argmax(q[s]))])
        visited.append(s)
        if s == GOAL:
            break
    return visited


def test_cycle_bonus_changes_policy_potential_does_not():
    p, r, disc = _cycle_mdp()
    q = _value_iteration(p, r, disc, num_iters=300)
    assert _greedy_rollout(q) == [0, 1, 2, GOAL]

    # Ng et al. 1999, Sec. 3: a positive bonus on every transition of a cycle (e.g. a
    # "progress" reward with no penalty for undoing it) makes looping optimal.
    bonus = np.zeros(p.shape, np.float32)
    for s, a, s_next in CYCLE:
        bonus[s, a, s_next] = 0.5
    q_bonus = _value_iteration(p, r + bonus, disc, num_iters=300)
    assert int(jnp.argmax(q_bonus[1])) == DETOUR
    looped = _greedy_rollout(q_bonus)
    assert GOAL not in looped and looped[:5] == [0, 1, 4, 5, 1]

    # A potential-based F on the same MDP, even one that pays on entering the cycle, doesn't.
    potentials = [jnp.array([0.0, 1.0, 2.0, 5.0, 3.0, 4.0])]
    potentials += list(3.0 * jax.random.normal(jax.random.PRNGKey(1), (20, NEXT.shape[0])))
    solve = jax.jit(jax.vmap(lambda phi: _value_iteration(p, r + _shaping_table(phi, disc), disc)))
    for phi, q_phi in zip(potentials, solve(jnp.stack(potentials).astype(f32)), strict=True):
        assert _greedy_rollout(q_phi) == [0, 1, 2, GOAL]
        live = np.arange(NEXT.shape[0]) != GOAL
        np.testing.assert_allclose(
            np.asarray(q_phi)[live], np.asarray(q - phi[:, None])[live], atol=1e-5
        )
    assert float(_shaping_table(potentials[0], disc)[1, DETOUR, 4]) > 0


# ---------------------------------------------------------------- envpool wrapper


def _phi_np(obs):
    return -np.abs(obs[..., 2])  # pole angle


def _phi(obs):
    return -jnp.abs(obs[:, 2])


def _run(vec, actions):
    @jax.jit
    def run(state, acts):
        def body(s, a):
            s, (obs, rew, term, trunc, info) = vec.step(s, a)
            return s, (obs, rew, term, trunc, info["env_reward"], info["shaping"])

        return jax.lax.scan(body, state, acts)

    _, out = run(vec.handle, jnp.asarray(actions))
    return [np.asarray(x) for x in out]


NUM_ENVS, SEED, MAX_STEPS, T = 3, 5, 20, 150


@pytest.fixture(scope="module")
def actions():
    return np.random.default_rng(0).integers(0, 2, size=(T, NUM_ENVS)).astype(np.int32)


def _episodes(first_obs, obs, term, trunc):
    """Per env, the (first obs index or -1, step indices, terminated) of each episode."""
    out = []
    for i in range(obs.shape[1]):
        s0, steps, prev_done = first_obs[i], [], False
        for t in range(obs.shape[0]):
            if prev_done:  # envpool's reset step: the new episode's first observation
                s0, steps = obs[t, i], []
            else:
                steps.append(t)
                if term[t, i] or trunc[t, i]:
                    out.append((i, s0, steps, bool(term[t, i])))
            prev_done = bool(term[t, i] or trunc[t, i])
    return out


def test_wrapper_matches_numpy_formula_on_cartpole(actions):
    gamma = 0.97
    plain = make_vec_env("CartPole-v1", NUM_ENVS, seed=SEED, max_episode_steps=MAX_STEPS)
    shaped = shape_vec_env(
        make_vec_env("CartPole-v1", NUM_ENVS, seed=SEED, max_episode_steps=MAX_STEPS), _phi, gamma
    )
    assert isinstance(shaped.handle, ShapingState)

    def run_plain(h, acts):
        def body(h, a):
            h, (obs, rew, term, trunc, _) = plain.step(h, a)
            return h, (obs, rew, term, trunc)

        return jax.lax.scan(body, h, acts)[1]

    obs0, rew0, term0, trunc0 = (np.asarray(x) for x in jax.jit(run_plain)(plain.handle, actions))
    obs, rew, term, trunc, env_rew, shaping = _run(shaped, actions)

    # the wrapped env is the same env: same observations, flags, and env reward kept in info
    np.testing.assert_array_equal(obs, obs0)
    np.testing.assert_array_equal(term, term0)
    np.testing.assert_array_equal(trunc, trunc0)
    np.testing.assert_array_equal(env_rew, rew0)

    # hand formula, step by step
    prev_obs, prev_done = shaped.first_obs, np.zeros(NUM_ENVS, bool)
    expected = np.zeros((T, NUM_ENVS))
    resets = np.zeros((T, NUM_ENVS), bool)
    for t in range(T):
        disc = np.where(term[t], 0.0, gamma)
        expected[t] = np.where(prev_done, 0.0, disc * _phi_np(obs[t]) - _phi_np(prev_obs))
        resets[t] = prev_done
        prev_obs, prev_done = obs[t], term[t] | trunc[t]
    np.testing.assert_allclose(shaping, expected, atol=1e-6)
    np.testing.assert_allclose(rew, rew0 + expected, atol=1e-6)

    # the cases the formula has to get right all occur, and look as the docs say
    assert term.sum() >= 3 and trunc.sum() >= 1 and resets.sum() >= 4
    assert (rew[resets] == 0).all() and (env_rew[resets] == 0).all()  # reset step: 0, not
    prev = np.concatenate([shaped.first_obs[None], obs[:-1]])  # gamma*Phi(reset)-Phi(final)
    np.testing.assert_allclose(shaping[term], -_phi_np(prev[term]), atol=1e-6)
    np.testing.assert_allclose(
        shaping[trunc], gamma * _phi_np(obs[trunc]) - _phi_np(prev[trunc]), atol=1e-6
    )

    # drop-in: a fresh shaped VecEnv works where the plain one does (exact resume replay;
    # the envpool env behind a handle is stateful, hence a new one)
    fresh = make_vec_env("CartPole-v1", NUM_ENVS, seed=SEED, max_episode_steps=MAX_STEPS)
    state, last_obs = replay_actions(shape_vec_env(fresh, _phi, gamma), actions)
    np.testing.assert_array_equal(last_obs, obs[-1])
    assert isinstance(state, ShapingState)
    np.testing.assert_allclose(state.phi_tm1, _phi_np(obs[-1]), atol=1e-7)


def test_wrapper_episode_shaping_telescopes_with_gamma_one(actions):
    shaped = shape_vec_env(
        make_vec_env("CartPole-v1", NUM_ENVS, seed=SEED, max_episode_steps=MAX_STEPS), _phi, 1.0
    )
    obs, _, term, trunc, _, shaping = _run(shaped, actions)
    episodes = _episodes(shaped.first_obs, obs, term, trunc)
    num_terminated = 0
    for i, s0, steps, terminated in episodes:
        total = shaping[steps, i].astype(np.float64).sum()
        if terminated:  # Phi(terminal) = 0: sum_t (Phi(s_t) - Phi(s_{t-1})) = -Phi(s_0)
            np.testing.assert_allclose(total, -_phi_np(s0), atol=1e-5)
            num_terminated += 1
        else:  # truncated: the real last potential stays
            np.testing.assert_allclose(total, _phi_np(obs[steps[-1], i]) - _phi_np(s0), atol=1e-5)
    assert num_terminated >= 3 and len(episodes) > num_terminated


def test_wrapper_argument_errors():
    vec = make_vec_env("CartPole-v1", 2, seed=0)
    with pytest.raises(ValueError, match="discount"):
        shape_step(vec.step, _phi, 1.5)
    with pytest.raises(AssertionError):  # the potential must be one float per env
        shape_vec_env(vec, lambda obs: obs, 0.99)
