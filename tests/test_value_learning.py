"""Hand-computed checks of the one-step TD errors, including episode ends and truncation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import value_learning as vl

Q_TM1 = jnp.array([1.0, 2.0, 3.0])
Q_T = jnp.array([0.5, 4.0, -1.0])
Q_T_SEL = jnp.array([5.0, 0.0, 1.0])  # selects action 0


@pytest.mark.parametrize("discount,expected", [(0.9, 1.0 + 0.9 * 4.0 - 2.0), (0.0, 1.0 - 2.0)])
def test_q_learning(discount, expected):
    td = vl.q_learning(Q_TM1, jnp.int32(1), jnp.float32(1.0), jnp.float32(discount), Q_T)
    np.testing.assert_allclose(td, expected, rtol=1e-6)


def test_double_q_learning_uses_selector_argmax_and_value_table():
    # selector picks action 0; value table says 0.5 there; plain max would say 4.0
    td = vl.double_q_learning(Q_TM1, jnp.int32(2), jnp.float32(1.0), jnp.float32(0.5), Q_T, Q_T_SEL)
    np.testing.assert_allclose(td, 1.0 + 0.5 * 0.5 - 3.0, rtol=1e-6)
    # termination: discount 0 ignores the bootstrap entirely
    td0 = vl.double_q_learning(
        Q_TM1, jnp.int32(2), jnp.float32(1.0), jnp.float32(0.0), Q_T, Q_T_SEL
    )
    np.testing.assert_allclose(td0, 1.0 - 3.0, rtol=1e-6)


def test_double_q_equals_q_learning_when_tables_agree():
    key = jax.random.PRNGKey(0)
    q = jax.random.normal(key, (7,))
    a = vl.double_q_learning(
        Q_TM1[:1].repeat(7), jnp.int32(0), jnp.float32(0.3), jnp.float32(0.9), q, q
    )
    b = vl.q_learning(Q_TM1[:1].repeat(7), jnp.int32(0), jnp.float32(0.3), jnp.float32(0.9), q)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sarsa_and_expected_sarsa():
    td = vl.sarsa(Q_TM1, jnp.int32(0), jnp.float32(-1.0), jnp.float32(0.9), Q_T, jnp.int32(2))
    np.testing.assert_allclose(td, -1.0 + 0.9 * -1.0 - 1.0, rtol=1e-6)
    probs = jnp.array([0.2, 0.5, 0.3])
    td = vl.expected_sarsa(Q_TM1, jnp.int32(0), jnp.float32(-1.0), jnp.float32(0.9), Q_T, probs)
    expected = -1.0 + 0.9 * (0.2 * 0.5 + 0.5 * 4.0 + 0.3 * -1.0) - 1.0
    np.testing.assert_allclose(td, expected, rtol=1e-6)
    # a one-hot policy makes expected SARSA equal SARSA
    onehot = jax.nn.one_hot(2, 3)
    a = vl.expected_sarsa(Q_TM1, jnp.int32(0), jnp.float32(-1.0), jnp.float32(0.9), Q_T, onehot)
    b = vl.sarsa(Q_TM1, jnp.int32(0), jnp.float32(-1.0), jnp.float32(0.9), Q_T, jnp.int32(2))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_vmap_and_jit_batch():
    key = jax.random.PRNGKey(1)
    b, a = 16, 4
    q_tm1, q_t, q_sel = jax.random.normal(key, (3, b, a))
    a_tm1 = jnp.arange(b, dtype=jnp.int32) % a
    r = jnp.linspace(-1, 1, b)
    d = jnp.where(jnp.arange(b) % 3 == 0, 0.0, 0.99)  # some terminations
    td = jax.jit(jax.vmap(vl.double_q_learning))(q_tm1, a_tm1, r, d, q_t, q_sel)
    q_tm1, q_t, q_sel = map(np.asarray, (q_tm1, q_t, q_sel))
    ref = (
        np.asarray(r)
        + np.asarray(d) * q_t[np.arange(b), q_sel.argmax(-1)]
        - q_tm1[np.arange(b), np.asarray(a_tm1)]
    )
    np.testing.assert_allclose(td, ref, rtol=1e-5, atol=1e-6)


def test_stop_target_gradients():
    def loss(q_t, stop):
        return vl.q_learning(Q_TM1, jnp.int32(0), jnp.float32(0.0), jnp.float32(1.0), q_t, stop)

    assert np.all(jax.grad(loss)(Q_T, True) == 0.0)
    np.testing.assert_allclose(jax.grad(loss)(Q_T, False), [0.0, 1.0, 0.0])


def test_shape_checks():
    with pytest.raises(AssertionError):
        vl.q_learning(Q_TM1, jnp.int32(0), jnp.float32(0.0), jnp.float32(1.0), jnp.zeros(4))
    with pytest.raises(AssertionError):
        vl.q_learning(Q_TM1[None], jnp.int32(0), jnp.float32(0.0), jnp.float32(1.0), Q_T)


def test_huber_loss():
    x = jnp.array([-3.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(vl.huber_loss(x), [2.5, 0.125, 0.0, 0.125, 1.5])
    np.testing.assert_allclose(jax.grad(lambda v: vl.huber_loss(v).sum())(x), [-1, -0.5, 0, 0.5, 1])
