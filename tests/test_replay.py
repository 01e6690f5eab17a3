"""Tests for rlax_zoo/replay.py (Schaul et al. 2016, "Prioritized Experience Replay").

References are sequential NumPy re-implementations of the paper's definitions.
"""

import functools
import importlib.util
import math
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlax_zoo import replay

EPS = 1e-6


def _item(value=0.0):
    return {"obs": jnp.full((3,), value, jnp.float32), "action": jnp.int32(value)}


def _items(values):
    values = np.asarray(values)
    return {
        "obs": jnp.asarray(np.repeat(values[:, None], 3, axis=1), jnp.float32),
        "action": jnp.asarray(values, jnp.int32),
    }


def _pairwise_sum_f32(leaves):
    """Float32 reduction in the sum tree's order: level by level, left + right."""
    level = np.asarray(leaves, np.float32)
    while level.shape[0] > 1:
        level = level[0::2] + level[1::2]
    return level[0]


def _leaves(state):
    return np.asarray(state.sum_tree[state.sum_tree.shape[0] // 2 :])


def _check_tree_consistent(state):
    """Every internal node is exactly left + right (sum) / min(left, right) (min)."""
    sum_tree, min_tree = np.asarray(state.sum_tree), np.asarray(state.min_tree)
    num_leaves = sum_tree.shape[0] // 2
    nodes = np.arange(1, num_leaves)
    np.testing.assert_array_equal(sum_tree[nodes], sum_tree[2 * nodes] + sum_tree[2 * nodes + 1])
    np.testing.assert_array_equal(
        min_tree[nodes], np.minimum(min_tree[2 * nodes], min_tree[2 * nodes + 1])
    )
    assert sum_tree[1] == _pairwise_sum_f32(sum_tree[num_leaves:])


def _chi_square_threshold(df):
    try:
        from scipy.stats import chi2

        return float(chi2.ppf(1.0 - 1e-6, df))
    except ImportError:  # generous: mean + 10 standard deviations
        return df + 10.0 * math.sqrt(2.0 * df)


class SequentialReference:
    """Sequential NumPy reference of the paper's definitions (Algorithm 1 lines 2, 6, 9, 12)."""

    def __init__(self, capacity, alpha, eps=EPS):
        self.capacity, self.alpha, self.eps = capacity, alpha, eps
        self.raw = np.zeros(capacity, np.float32)
        self.position, self.size, self.max_priority = 0, 0, np.float32(1.0)

    def add(self, k):
        for _ in range(k):
            self.raw[self.position] = self.max_priority
            self.position = (self.position + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def set_priorities(self, indices, deltas):
        for i, d in zip(indices, deltas, strict=True):
            if 0 <= i < self.size:
                p = np.float32(abs(np.float32(d))) + np.float32(self.eps)
                self.raw[i] = p
                self.max_priority = max(self.max_priority, p)

    def leaves(self):
        return (self.raw[: self.size].astype(np.float64) ** self.alpha).astype(np.float32)

    def proportional_probs(self):
        p = self.raw[: self.size].astype(np.float64) ** self.alpha
        return p / p.sum()

    def rank_probs(self):
        # rank 1 = largest priority; ties broken by lower slot first (stable sort).
        order = np.argsort(-self.raw[: self.size], kind="stable")
        ranks = np.empty(self.size, np.int64)
        ranks[order] = np.arange(1, self.size + 1)
        p = ranks.astype(np.float64) ** -self.alpha
        return p / p.sum()


def _importance_weights(probs, n, beta):
    w = (n * probs) ** -beta
    return w / w.max()


# ---------------------------------------------------------------------------------------------
# Uniform replay.


def test_uniform_ring_buffer_wraparound():
    buffer = replay.uniform_replay(capacity=5, batch_size=4)
    add = jax.jit(buffer.add, donate_argnums=0)
    state = buffer.init(_item())
    state = add(state, _items([0, 1, 2]))
    assert int(state.position) == 3 and int(state.size) == 3
    state = add(state, _items([3, 4, 5, 6]))
    np.testing.assert_array_equal(state.storage["action"], [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(state.storage["obs"][:, 0], [5, 6, 2, 3, 4])
    assert int(state.position) == 2 and int(state.size) == 5
    assert state.position.dtype == jnp.int32 and state.size.dtype == jnp.int32

    # More items than capacity in one call: only the newest `capacity` survive.
    state = add(buffer.init(_item()), _items(np.arange(12)))
    ring = np.zeros(5, np.int64)
    for t in range(12):
        ring[t % 5] = t
    np.testing.assert_array_equal(state.storage["action"], ring)
    assert int(state.position) == 12 % 5 and int(state.size) == 5


def test_uniform_sample_in_range_and_noop_priorities():
    buffer = replay.uniform_replay(capacity=100, batch_size=64)
    state = jax.jit(buffer.add)(buffer.init(_item()), _items(np.arange(7) + 10))
    sample = jax.jit(buffer.sample)
    for seed in range(5):
        batch = sample(state, jax.random.key(seed))
        idx = np.asarray(batch.indices)
        assert idx.dtype == np.int32 and idx.shape == (64,)
        assert idx.min() >= 0 and idx.max() < 7
        np.testing.assert_array_equal(batch.items["action"], idx + 10)
        np.testing.assert_array_equal(batch.weights, np.ones(64, np.float32))
        np.testing.assert_allclose(batch.probabilities, np.full(64, 1 / 7), rtol=1e-6)
    same = jax.jit(buffer.set_priorities, donate_argnums=0)(
        state, batch.indices, jnp.ones(64, jnp.float32)
    )
    np.testing.assert_array_equal(same.storage["action"][:7], np.arange(7) + 10)


# ---------------------------------------------------------------------------------------------
# Proportional sum tree vs a sequential NumPy reference.


@pytest.mark.parametrize(
    "capacity, tree_impl",
    # 13: set_priorities rebuilds densely
    [(13, "auto"), (40, "levels"), (40, "walk"), (40, "batched")],
)
def test_sum_tree_matches_sequential_reference(capacity, tree_impl):
    alpha = 0.6
    buffer = replay.prioritized_replay(capacity, batch_size=8, alpha=alpha, tree_impl=tree_impl)
    add = jax.jit(buffer.add, donate_argnums=0)
    set_priorities = jax.jit(buffer.set_priorities, donate_argnums=0)
    sample = jax.jit(buffer.sample)
    ref = SequentialReference(capacity, alpha)
    rng = np.random.default_rng(0)
    state = buffer.init(_item())
    for step in range(25):
        k = int(rng.choice([1, 8]))
        state = add(state, _items(np.arange(k)))
        ref.add(k)
        # Random indices with duplicates and out-of-range entries (ignored), wide dynamic range.
        indices = rng.integers(-1, capacity + 2, size=8).astype(np.int32)
        deltas = (10.0 ** rng.uniform(-4, 3, size=8) * rng.choice([-1, 1], size=8)).astype(
            np.float32
        )
        state = set_priorities(state, jnp.asarray(indices), jnp.asarray(deltas))
        ref.set_priorities(indices, deltas)

        assert int(state.size) == ref.size and int(state.position) == ref.position
        np.testing.assert_array_equal(state.priorities, ref.raw)
        assert state.max_priority == ref.max_priority
        leaves = _leaves(state)
        np.testing.assert_allclose(leaves[: ref.size], ref.leaves(), rtol=2e-6)
        assert np.all(leaves[ref.size :] == 0)
        _check_tree_consistent(state)
        np.testing.assert_allclose(
            state.sum_tree[1], ref.leaves().astype(np.float64).sum(), rtol=1e-5
        )
        assert state.min_tree[1] == leaves[: ref.size].min()

        batch = sample(state, jax.random.key(step), 0.5)
        idx = np.asarray(batch.indices)
        assert idx.min() >= 0 and idx.max() < ref.size
        np.testing.assert_allclose(batch.probabilities, ref.proportional_probs()[idx], rtol=1e-5)


@pytest.mark.parametrize("tree_impl", ["levels", "walk", "batched"])
def test_no_drift_after_a_million_priority_writes(tree_impl):
    """1e6 priority writes inside one jitted fori_loop: the root stays exactly the float32
    pairwise sum of the leaves; a naive delta-propagating tree drifts on the same updates."""
    capacity, batch, iterations = 4096, 250, 4000  # 1_000_000 writes
    buffer = replay.prioritized_replay(capacity, batch_size=batch, alpha=0.6, tree_impl=tree_impl)
    state = jax.jit(buffer.add)(buffer.init(jnp.zeros((), jnp.float32)), jnp.zeros(capacity))

    def updates(i):
        key = jax.random.fold_in(jax.random.key(42), i)
        k_idx, k_val = jax.random.split(key)
        # Unique indices (the naive tree needs them): a random offset and an odd stride
        # (coprime with capacity = 2^12).
        offset = jax.random.randint(k_idx, (), 0, capacity)
        stride = jnp.array([1, 3, 5, 7, 9, 11])[i % 6]
        indices = ((offset + stride * jnp.arange(batch)) % capacity).astype(jnp.int32)
        deltas = 10.0 ** jax.random.uniform(k_val, (batch,), minval=-3.0, maxval=3.0)
        return indices, deltas

    @jax.jit
    def run(state):
        def body(i, carry):
            state, naive = carry
            indices, deltas = updates(i)
            state = buffer.set_priorities(state, indices, deltas)
            # Naive tree: add (new - old) to the leaf and every ancestor (what we avoid).
            num_leaves = naive.shape[0] // 2
            node = indices + num_leaves
            leaf = jnp.power(deltas + EPS, 0.6)
            delta = leaf - naive[node]
            naive = naive.at[node].set(leaf)
            for _ in range(num_leaves.bit_length() - 1):
                node = node // 2
                naive = naive.at[node].add(delta)
            return state, naive

        return jax.lax.fori_loop(0, iterations, body, (state, state.sum_tree))

    state, naive = run(state)
    leaves = _leaves(state)
    exact = leaves.astype(np.float64).sum()
    _check_tree_consistent(state)  # root == pairwise float32 sum, bit for bit
    assert abs(float(state.sum_tree[1]) - exact) <= 1e-6 * exact
    np.testing.assert_array_equal(naive[naive.shape[0] // 2 :], leaves)  # same leaves...
    naive_error = abs(float(naive[1]) - exact)
    ours_error = abs(float(state.sum_tree[1]) - exact)
    assert naive_error > ours_error  # ...but its root has drifted


def test_max_priority_keeps_fractional_part():
    buffer = replay.prioritized_replay(8, batch_size=2, alpha=0.6, eps=EPS)
    add = jax.jit(buffer.add, donate_argnums=0)
    set_priorities = jax.jit(buffer.set_priorities, donate_argnums=0)
    state = add(buffer.init(_item()), _items([0]))
    state = set_priorities(state, jnp.array([0, 0], jnp.int32), jnp.array([2.7, 0.1], jnp.float32))
    assert state.priorities[0] == np.float32(0.1) + np.float32(EPS)  # last duplicate wins
    expected = np.float32(2.7) + np.float32(EPS)
    assert state.max_priority.dtype == jnp.float32
    assert state.max_priority == expected
    state = add(state, _items([1]))
    assert state.priorities[1] == expected
    np.testing.assert_allclose(_leaves(state)[1], expected**0.6, rtol=1e-6)
    # Lower priorities never decrease the running max (Algorithm 1 line 6: max_{i<t} p_i).
    state = set_priorities(state, jnp.array([1, 0]), jnp.array([0.1, 0.2]))
    assert state.max_priority == expected


@pytest.mark.parametrize("tree_impl", ["levels", "walk", "batched"])
def test_descent_never_returns_empty_slots_at_the_right_edge(tree_impl):
    # A huge and a tiny leaf: total = 1e8 + 1 rounds to 1e8, so "target - left" overshoots.
    capacity = 6
    slots = jnp.array([0, 2], jnp.int32)
    sum_tree, _ = jax.jit(replay.tree_set, static_argnums=5)(
        *replay.empty_trees(8), slots, jnp.array([1e8, 1.0]), jnp.ones(2, bool), tree_impl
    )
    total = np.float32(sum_tree[1])
    targets = np.array(
        [0.0, 1e8 - 8, np.nextafter(total, np.float32(0)), total, 2 * total, np.inf], np.float32
    )
    leaves = np.asarray(jax.jit(replay.tree_descend)(sum_tree, jnp.asarray(targets)))
    assert set(leaves.tolist()) <= {0, 2}, leaves
    assert leaves.max() < capacity


def test_tree_update_paths_are_bit_identical():
    """In-order leaf writes with level or walk updates, a masked scatter and the dense rebuild
    give the same trees (and the same extra array); the in-order paths apply duplicates in
    order (last wins), like the last-occurrence mask."""
    num_leaves, batch = 64, 8  # batch * depth = 48 < 128: sequential / batched; rebuild forced
    rng = np.random.default_rng(1)
    empty = (*replay.empty_trees(num_leaves), jnp.zeros(50))
    sequential = walk = batched = rebuild = empty
    update = jax.jit(replay.tree_set, static_argnums=5)
    pad = 22 - batch  # 22 * 6 >= 128: the rebuild path

    def apply(trees, slots, leaves, write, impl):
        return update(*trees[:2], slots, leaves, write, impl, extra=((trees[2], 2 * leaves),))

    for _ in range(20):
        slots = rng.integers(0, 50, size=batch).astype(np.int32)
        leaves = rng.uniform(0, 10, size=batch).astype(np.float32)
        last = np.zeros(batch, bool)
        last[[max(np.nonzero(slots == s)[0]) for s in np.unique(slots)]] = True
        sequential = apply(sequential, slots, leaves, np.ones(batch, bool), "levels")
        walk = apply(walk, slots, leaves, np.ones(batch, bool), "walk")
        batched = apply(batched, slots, leaves, last, "batched")
        rebuild = apply(
            rebuild,
            np.concatenate([slots, np.zeros(pad, np.int32)]),
            np.concatenate([leaves, np.zeros(pad, np.float32)]),
            np.concatenate([last, np.zeros(pad, bool)]),
            "batched",
        )
    # Without a min tree (shape [0]: normalise_weights="batch") the sum tree is the same.
    for impl in ("levels", "walk", "batched"):
        no_min = (replay.empty_trees(num_leaves)[0], jnp.zeros(0), jnp.zeros(50))
        rng = np.random.default_rng(1)
        for _ in range(20):
            slots = rng.integers(0, 50, size=batch).astype(np.int32)
            leaves = rng.uniform(0, 10, size=batch).astype(np.float32)
            last = np.zeros(batch, bool)
            last[[max(np.nonzero(slots == s)[0]) for s in np.unique(slots)]] = True
            write = last if impl == "batched" else np.ones(batch, bool)
            no_min = apply(no_min, slots, leaves, write, impl)
        np.testing.assert_array_equal(no_min[0], sequential[0])
        np.testing.assert_array_equal(no_min[2], sequential[2])
        assert no_min[1].shape == (0,)
    for a, b, c, d in zip(sequential, batched, rebuild, walk, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)
    sum_tree, min_tree, extra = map(np.asarray, sequential)
    assert sum_tree[1] == _pairwise_sum_f32(sum_tree[num_leaves:])
    np.testing.assert_array_equal(extra, 2 * sum_tree[num_leaves : num_leaves + 50])
    written = sum_tree[num_leaves:] > 0
    assert min_tree[1] == sum_tree[num_leaves:][written].min()


# ---------------------------------------------------------------------------------------------
# Sampling distribution, probabilities and importance weights, for both kinds.


@functools.cache
def _filled_buffer(kind, alpha=0.7, capacity=20, stored=16, batch_size=64, normalise="buffer"):
    """16 items with distinct priorities in a 20-slot buffer; jitted `sample`; a reference."""
    buffer = replay.prioritized_replay(
        capacity, batch_size=batch_size, alpha=alpha, kind=kind, normalise_weights=normalise
    )
    rng = np.random.default_rng(0)
    deltas = rng.permutation(np.linspace(0.05, 3.0, stored)).astype(np.float32)  # distinct

    @jax.jit
    def fill(state):
        state = buffer.add(state, _items(np.arange(stored)))
        return buffer.set_priorities(state, jnp.arange(stored), jnp.asarray(deltas))

    state = fill(buffer.init(_item()))
    ref = SequentialReference(capacity, alpha)
    ref.add(stored)
    ref.set_priorities(np.arange(stored), deltas)
    return buffer, state, ref, jax.jit(buffer.sample)


@pytest.mark.parametrize("kind", ["proportional", "rank"])
def test_sampling_frequencies_match_probabilities(kind):
    buffer, state, ref, _ = _filled_buffer(kind)
    probs = ref.proportional_probs() if kind == "proportional" else ref.rank_probs()
    keys = jax.random.split(jax.random.key(7), 500)
    batches = jax.jit(jax.vmap(buffer.sample, in_axes=(None, 0, None)))(state, keys, 0.5)
    idx = np.asarray(batches.indices).ravel()
    counts = np.bincount(idx, minlength=20)
    assert counts[16:].sum() == 0  # never an empty slot
    n = idx.size
    expected = n * probs
    chi2 = ((counts[:16] - expected) ** 2 / expected).sum()
    assert chi2 < _chi_square_threshold(df=15), (chi2, counts, expected)
    np.testing.assert_allclose(batches.probabilities.ravel(), probs[idx], rtol=1e-5)


@pytest.mark.parametrize("kind", ["proportional", "rank"])
@pytest.mark.parametrize("beta", [0.0, 0.4, 1.0])
def test_importance_weights(kind, beta):
    _, state, ref, sample = _filled_buffer(kind)
    probs = ref.proportional_probs() if kind == "proportional" else ref.rank_probs()
    batch = sample(state, jax.random.key(1), beta)
    idx = np.asarray(batch.indices)
    expected = _importance_weights(probs, ref.size, beta)[idx]
    np.testing.assert_allclose(batch.weights, expected, rtol=2e-5)
    assert np.all(np.asarray(batch.weights) <= 1.0)


@pytest.mark.parametrize("kind", ["proportional", "rank"])
def test_weights_normalised_over_the_batch(kind):
    """normalise_weights="batch": w_i = (N P(i))^-beta / max over the batch (no min tree); the
    same probabilities and samples as the buffer-normalised buffer."""
    beta = 0.6
    _, state, ref, sample = _filled_buffer(kind, normalise="batch")
    _, exact_state, _, exact_sample = _filled_buffer(kind)
    probs = ref.proportional_probs() if kind == "proportional" else ref.rank_probs()
    batch = sample(state, jax.random.key(3), beta)
    idx = np.asarray(batch.indices)
    w = (ref.size * probs[idx]) ** -beta
    np.testing.assert_allclose(batch.weights, w / w.max(), rtol=2e-5)
    assert np.max(batch.weights) == 1.0
    exact = exact_sample(exact_state, jax.random.key(3), beta)
    np.testing.assert_array_equal(idx, exact.indices)
    np.testing.assert_array_equal(batch.probabilities, exact.probabilities)
    np.testing.assert_array_equal(state.sum_tree, exact_state.sum_tree)
    assert state.min_tree.shape == (0,)


def test_rank_probabilities_are_normalised_power_law():
    alpha = 0.7
    _, state, _, sample = _filled_buffer("rank", alpha=alpha)
    raw = np.asarray(state.priorities)[:16]
    ranks = np.empty(16, np.int64)
    ranks[np.argsort(-raw)] = np.arange(1, 17)  # rank 1 = largest |delta|
    expected = (1.0 / ranks) ** alpha / ((1.0 / np.arange(1, 17)) ** alpha).sum()
    batch = sample(state, jax.random.key(0), 0.5)
    idx = np.asarray(batch.indices)
    np.testing.assert_allclose(batch.probabilities, expected[idx], rtol=1e-5)
    # Stratification: the B draws cover [0, total) in order, so ranks are non-decreasing.
    assert np.all(np.diff(ranks[idx]) >= 0)


def test_alpha_zero_is_uniform():
    for kind in replay.KINDS:
        _, state, _, sample = _filled_buffer(kind, alpha=0.0)
        batch = sample(state, jax.random.key(0), 1.0)
        np.testing.assert_allclose(batch.probabilities, np.full(64, 1 / 16), rtol=1e-6)
        np.testing.assert_allclose(batch.weights, np.ones(64), rtol=1e-6)


def test_rank_buffer_ring_and_donation():
    buffer = replay.prioritized_replay(4, batch_size=3, kind="rank")
    add = jax.jit(buffer.add, donate_argnums=0)
    state = add(buffer.init(_item()), _items([0, 1, 2]))
    state = jax.jit(buffer.set_priorities, donate_argnums=0)(
        state, jnp.array([0, 1, 2]), jnp.array([0.5, 3.0, 0.1])
    )
    old = state
    state = add(state, _items([3, 4]))
    assert old.priorities.is_deleted()  # donated, rewritten in place
    np.testing.assert_array_equal(state.storage["action"], [4, 1, 2, 3])
    np.testing.assert_allclose(state.priorities, [3.0 + EPS, 3.0 + EPS, 0.1 + EPS, 3.0 + EPS])
    batch = jax.jit(buffer.sample)(state, jax.random.key(0), 0.5)
    assert np.asarray(batch.indices).max() < 4


# ---------------------------------------------------------------------------------------------
# Argument validation.


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(capacity=0, batch_size=1), "capacity"),
        (dict(capacity=2.5, batch_size=1), "capacity"),
        (dict(capacity=True, batch_size=1), "capacity"),
        (dict(capacity=4, batch_size=0), "batch_size"),
        (dict(capacity=4, batch_size=2, alpha=-0.1), "alpha"),
        (dict(capacity=4, batch_size=2, alpha=float("nan")), "alpha"),
        (dict(capacity=4, batch_size=2, kind="heap"), "kind"),
        (dict(capacity=4, batch_size=2, eps=0.0), "eps"),
        (dict(capacity=4, batch_size=2, eps=-1e-3), "eps"),
        (dict(capacity=4, batch_size=2, tree_impl="gpu"), "tree_impl"),
        (dict(capacity=4, batch_size=2, normalise_weights="max"), "normalise_weights"),
    ],
)
def test_prioritized_argument_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        replay.prioritized_replay(**kwargs)


def test_uniform_argument_validation_and_bad_items():
    with pytest.raises(ValueError, match="capacity must be an integer >= 1"):
        replay.uniform_replay(0, 4)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        replay.uniform_replay(4, -2)
    buffer = replay.prioritized_replay(4, 2)
    state = buffer.init(_item())
    with pytest.raises(ValueError, match="leading \\[K\\] axis"):
        buffer.add(state, _item())  # missing the K axis
    with pytest.raises(ValueError, match="pytree structure"):
        buffer.add(state, {"obs": jnp.zeros((1, 3))})
    with pytest.raises(ValueError, match="shape \\[B\\]"):
        buffer.set_priorities(state, jnp.zeros(3, jnp.int32), jnp.zeros(2))


# ---------------------------------------------------------------------------------------------
# Properties and vendorability.


@functools.cache
def _scenario(capacity, batch_size, alpha):
    """One jitted function per config: a dynamic number of single-item adds, then 6 priority
    writes (indices may repeat or fall outside the stored slots), repeated per op, then sample."""
    buffer = replay.prioritized_replay(capacity, batch_size=batch_size, alpha=alpha)

    def run(add_counts, indices, deltas, key):
        def op(state, xs):
            count, idx, delta = xs
            state = jax.lax.fori_loop(
                0, count, lambda i, s: buffer.add(s, jnp.full((1,), i, jnp.float32)), state
            )
            return buffer.set_priorities(state, idx, delta), None

        state = buffer.init(jnp.zeros((), jnp.float32))
        state, _ = jax.lax.scan(op, state, (add_counts, indices, deltas))
        return state, buffer.sample(state, key, 0.5)

    return jax.jit(run)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.sampled_from([1, 13, 40]),
    batch_size=st.sampled_from([1, 16]),
    alpha=st.just(0.6),
    add_counts=st.lists(st.integers(1, 50), min_size=3, max_size=3),
    deltas=st.lists(st.floats(0.0, 1e3, width=32), min_size=18, max_size=18),
    seed=st.integers(0, 2**16),
)
def test_property_tree_total_and_probabilities(
    capacity, batch_size, alpha, add_counts, deltas, seed
):
    rng = np.random.default_rng(seed)
    indices = rng.integers(-2, capacity + 2, size=(3, 6)).astype(np.int32)
    state, batch = _scenario(capacity, batch_size, alpha)(
        jnp.asarray(add_counts, jnp.int32),
        jnp.asarray(indices),
        jnp.asarray(deltas, jnp.float32).reshape(3, 6),
        jax.random.key(seed),
    )
    size = int(state.size)
    assert size == min(sum(add_counts), capacity)
    assert int(state.position) == sum(add_counts) % capacity
    _check_tree_consistent(state)  # total == pairwise sum of leaves, min tree exact
    leaves = _leaves(state)
    assert np.all(leaves[:size] > 0) and np.all(leaves[size:] == 0)
    probs = leaves[:size].astype(np.float64) / float(state.sum_tree[1])
    assert abs(probs.sum() - 1.0) < 1e-5
    idx = np.asarray(batch.indices)
    assert idx.min() >= 0 and idx.max() < size
    np.testing.assert_allclose(batch.probabilities, probs[idx], rtol=1e-5)
    weights = np.asarray(batch.weights)
    assert np.all(weights <= 1.0) and np.all(weights > 0)


def test_replay_file_is_vendorable(tmp_path):
    """The file works when copied alone (imports no other rlax_zoo module)."""
    source = pathlib.Path(replay.__file__)
    target = tmp_path / "vendored_replay.py"
    shutil.copy(source, target)
    spec = importlib.util.spec_from_file_location("vendored_replay", target)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vendored_replay"] = module  # as `import` would (dataclasses look it up)
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["vendored_replay"]
    buffer = module.prioritized_replay(4, 2)
    state = jax.jit(buffer.add)(buffer.init(jnp.zeros(2)), jnp.ones((3, 2)))
    assert int(jax.jit(buffer.sample)(state, jax.random.key(0), 0.4).indices.max()) < 3
