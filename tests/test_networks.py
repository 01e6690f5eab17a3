"""Tests for rlax_zoo.networks: dueling aggregation (Wang et al. 2016, eqs. 8-9) and shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import networks

VALUE = np.array([[1.0], [-2.0]])
ADVANTAGES = np.array([[1.0, 2.0, 6.0], [0.0, -3.0, 0.5]])


def test_dueling_aggregate_mean_hand_computed():
    # Row 0: mean A = 3 -> Q = 1 + A - 3 = [-1, 0, 4]; row 1: mean A = -0.8333...
    q = networks.dueling_aggregate(jnp.asarray(VALUE), jnp.asarray(ADVANTAGES), "mean")
    m1 = (0.0 - 3.0 + 0.5) / 3
    np.testing.assert_allclose(q, [[-1.0, 0.0, 4.0], [-2.0 - m1, -5.0 - m1, -1.5 - m1]], rtol=1e-6)


def test_dueling_aggregate_max_hand_computed():
    # Row 0: max A = 6 -> Q = [1 + 1 - 6, 1 + 2 - 6, 1] ; row 1: max A = 0.5.
    q = networks.dueling_aggregate(jnp.asarray(VALUE), jnp.asarray(ADVANTAGES), "max")
    np.testing.assert_allclose(q, [[-4.0, -3.0, 1.0], [-2.5, -5.5, -2.0]], rtol=1e-6)


def test_dueling_aggregate_default_is_mean_and_accepts_flat_value():
    q_default = networks.dueling_aggregate(jnp.asarray(VALUE[:, 0]), jnp.asarray(ADVANTAGES))
    q_mean = networks.dueling_aggregate(jnp.asarray(VALUE), jnp.asarray(ADVANTAGES), "mean")
    np.testing.assert_allclose(q_default, q_mean)
    assert q_default.shape == (2, 3)


def test_identifiability():
    key_v, key_a = jax.random.split(jax.random.key(0))
    value = jax.random.normal(key_v, (16, 1))
    advantages = 3.0 * jax.random.normal(key_a, (16, 7))
    # mean: the advantages Q - V have zero mean over actions.
    q_mean = networks.dueling_aggregate(value, advantages, "mean")
    np.testing.assert_allclose(jnp.mean(q_mean - value, axis=-1), 0.0, atol=1e-5)
    # max: the greedy action's Q equals V (and no Q exceeds V).
    q_max = networks.dueling_aggregate(value, advantages, "max")
    greedy = jnp.argmax(advantages, axis=-1)
    np.testing.assert_allclose(q_max[jnp.arange(16), greedy], value[:, 0], atol=1e-6)
    np.testing.assert_allclose(jnp.max(q_max, axis=-1), value[:, 0], atol=1e-6)
    assert np.all(np.asarray(jnp.argmax(q_max, axis=-1)) == np.asarray(greedy))


def test_unknown_aggregator_raises():
    with pytest.raises(ValueError, match="aggregator"):
        networks.dueling_aggregate(jnp.zeros((2, 1)), jnp.zeros((2, 3)), "sum")
    net = networks.QNetwork(num_actions=3, dueling=True, aggregator="median")
    with pytest.raises(ValueError, match="aggregator"):
        net.init(jax.random.key(0), jnp.zeros((2, 4)))


def test_unknown_torso_raises():
    net = networks.QNetwork(num_actions=3, torso="resnet")
    with pytest.raises(ValueError, match="torso"):
        net.init(jax.random.key(0), jnp.zeros((2, 4)))


@pytest.mark.parametrize("dueling", [False, True])
@pytest.mark.parametrize("aggregator", ["mean", "max"])
def test_mlp_qnetwork_shapes(dueling, aggregator):
    net = networks.QNetwork(num_actions=5, dueling=dueling, aggregator=aggregator)
    obs = jnp.ones((3, 4))
    params = net.init(jax.random.key(0), obs)
    q = net.apply(params, obs)
    assert q.shape == (3, 5) and q.dtype == jnp.float32
    assert np.all(np.isfinite(q))


@pytest.mark.parametrize("dueling", [False, True])
def test_nature_cnn_qnetwork_shapes(dueling):
    net = networks.QNetwork(num_actions=6, torso="nature_cnn", dueling=dueling)
    obs = jnp.zeros((2, 4, 84, 84), jnp.uint8)
    params = jax.eval_shape(net.init, jax.random.key(0), obs)  # shapes only: fast
    q = jax.eval_shape(net.apply, params, obs)
    assert q.shape == (2, 6) and q.dtype == jnp.float32
    cnn = params["params"]["NatureCNN_0"]
    assert cnn["Dense_0"]["kernel"].shape == (7 * 7 * 64, 512)
    head = params["params"]["DuelingHead_0" if dueling else "QHead_0"]
    if dueling:
        assert head["value"]["kernel"].shape == (512, 1)
        assert head["advantage"]["kernel"].shape == (512, 6)
    # One real forward pass on a single frame stack.
    real_params = net.init(jax.random.key(0), obs[:1])
    assert net.apply(real_params, obs[:1]).shape == (1, 6)


def test_dueling_head_has_separate_streams():
    head = networks.DuelingHead(num_actions=4, hidden_size=8)
    params = head.init(jax.random.key(0), jnp.ones((2, 10)))["params"]
    assert set(params) == {"value_hidden", "advantage_hidden", "value", "advantage"}
    assert params["value_hidden"]["kernel"].shape == (10, 8)
    assert params["advantage_hidden"]["kernel"].shape == (10, 8)
    assert params["value"]["kernel"].shape == (8, 1)
    assert params["advantage"]["kernel"].shape == (8, 4)
    # The streams really are separate: the value output ignores the advantage-stream weights.
    # Zeroing the advantage output makes Q = V for every action (mean aggregator).
    zeroed = dict(params)
    zeroed["advantage"] = jax.tree.map(jnp.zeros_like, params["advantage"])
    q = head.apply({"params": zeroed}, jnp.ones((2, 10)))
    np.testing.assert_allclose(q, jnp.broadcast_to(q[:, :1], q.shape), atol=1e-6)
    scrambled = dict(zeroed)
    scrambled["advantage_hidden"] = jax.tree.map(lambda x: x + 1.0, params["advantage_hidden"])
    np.testing.assert_allclose(head.apply({"params": scrambled}, jnp.ones((2, 10))), q, atol=1e-6)


def test_dueling_head_without_hidden_layers():
    head = networks.DuelingHead(num_actions=4)
    params = head.init(jax.random.key(0), jnp.ones((2, 10)))["params"]
    assert set(params) == {"value", "advantage"}


@pytest.mark.parametrize(
    "torso, count",
    [
        # conv 16x8x8/4 on 4 channels, conv 32x4x4/2, dense 9*9*32 -> 256 (84 -> 20 -> 9)
        (
            "impala_shallow",
            (8 * 8 * 4 * 16 + 16) + (4 * 4 * 16 * 32 + 32) + (9 * 9 * 32 * 256 + 256),
        ),
        # sections 16, 32, 32: a conv in, 4 convs in the two residual blocks; 84 -> 42 -> 21
        # -> 11 after the three stride-2 "SAME" pools; dense 11*11*32 -> 256
        (
            "impala_deep",
            (3 * 3 * 4 * 16 + 16)
            + 4 * (3 * 3 * 16 * 16 + 16)
            + (3 * 3 * 16 * 32 + 32)
            + 4 * (3 * 3 * 32 * 32 + 32)
            + (3 * 3 * 32 * 32 + 32)
            + 4 * (3 * 3 * 32 * 32 + 32)
            + (11 * 11 * 32 * 256 + 256),
        ),
    ],
)
def test_impala_torsos_match_the_paper_sizes(torso, count):
    """Espeholt et al. 2018, Figure 3: parameter counts computed by hand for 84x84x4 frames."""
    net = networks.make_torso(torso)
    obs = jnp.zeros((2, 4, 84, 84), jnp.uint8)
    params = jax.eval_shape(net.init, jax.random.key(0), obs)
    assert sum(np.prod(x.shape) for x in jax.tree.leaves(params)) == count
    assert jax.eval_shape(net.apply, params, obs).shape == (2, 256)
    ac = networks.ActorCriticNetwork(num_actions=6, torso=torso)
    real = ac.init(jax.random.key(0), obs[:1] + 7)
    logits, value = ac.apply(real, obs[:1] + 7)
    assert logits.shape == (1, 6) and value.shape == (1,) and np.all(np.isfinite(logits))
