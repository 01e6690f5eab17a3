"""MCTS (rlax_zoo.mcts): a hand-computed tree, a sequential Python reference on random
models, root noise and the visit-count policy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import mcts

C_INIT, C_BASE = 1.25, 19652.0


# ---------------------------------------------------------------------------------------
# A table model: the state is an int; every output is a row of fixed random tables.


def random_tables(seed: int, num_states: int = 101, num_actions: int = 4):
    rng = np.random.default_rng(seed)
    invalid = rng.random((num_states, num_actions)) < 0.3
    invalid[np.arange(num_states), rng.integers(0, num_actions, num_states)] = False
    return dict(
        logits=rng.normal(size=(num_states, num_actions)).astype(np.float32) * 2,
        value=rng.uniform(-1, 1, num_states).astype(np.float32),
        reward=rng.uniform(-1, 1, (num_states, num_actions)).astype(np.float32),
        discount=rng.choice(np.float32([-1.0, 0.0, 0.9]), (num_states, num_actions)),
        invalid=invalid,
    )


def next_state(s, a, num_states):
    return (s * 7 + a * 13 + 1) % num_states


def table_model(tables):
    t = {k: jnp.asarray(v) for k, v in tables.items()}
    m = tables["value"].shape[0]

    def recurrent_fn(params, key, action, state):  # noqa: ARG001
        nxt = next_state(state, action, m)
        out = mcts.RecurrentFnOutput(
            reward=t["reward"][state, action],
            discount=t["discount"][state, action],
            prior_logits=t["logits"][nxt],
            value=t["value"][nxt],
            invalid_actions=t["invalid"][nxt],
        )
        return out, nxt

    def root(states):
        return mcts.RootFnOutput(t["logits"][states], t["value"][states], states)

    return root, recurrent_fn


def softmax_masked(logits, invalid):
    x = np.where(invalid, -np.inf, logits.astype(np.float64))
    e = np.where(invalid, 0.0, np.exp(x - x[~invalid].max()))
    return e / e.sum()


def reference_search(tables, root_state, num_simulations, unvisited_value=0.0, nodes=None):
    """The algorithm of the module docstring, one tree, in plain Python and float64; with
    `nodes` (a list from `reference_subtree`), continues that tree instead."""
    m = tables["value"].shape[0]
    reuse = nodes is not None
    nodes = nodes if reuse else []

    def new_node(state, parent, action):
        nodes.append(
            dict(
                state=state,
                visits=1,
                value=float(tables["value"][state]),
                parent=parent,
                action=action,
                prior=softmax_masked(tables["logits"][state], tables["invalid"][state]),
                invalid=tables["invalid"][state],
                children={},
            )
        )
        return len(nodes) - 1

    if not reuse:
        new_node(root_state, -1, -1)
        nodes[0]["invalid"] = tables["invalid"][root_state]
    for _ in range(num_simulations):
        node = 0
        while True:
            n = nodes[node]
            c = math.log((1 + n["visits"] + C_BASE) / C_BASE) + C_INIT
            scores = []
            for a in range(len(n["prior"])):
                if n["invalid"][a]:
                    scores.append(-math.inf)
                    continue
                child = n["children"].get(a)
                visits = nodes[child]["visits"] if child is not None else 0
                if child is None:
                    q = unvisited_value
                else:
                    s = n["state"]
                    q = tables["reward"][s, a] + tables["discount"][s, a] * nodes[child]["value"]
                scores.append(q + c * n["prior"][a] * math.sqrt(n["visits"]) / (1 + visits))
            a = int(np.argmax(scores))
            if a not in n["children"]:
                break
            node = n["children"][a]
        leaf = new_node(next_state(nodes[node]["state"], a, m), node, a)
        nodes[node]["children"][a] = leaf
        g, child = nodes[leaf]["value"], leaf
        while nodes[child]["parent"] != -1:
            parent, a = nodes[child]["parent"], nodes[child]["action"]
            s = nodes[parent]["state"]
            g = float(tables["reward"][s, a]) + float(tables["discount"][s, a]) * g
            p = nodes[parent]
            p["value"] = (p["value"] * p["visits"] + g) / (p["visits"] + 1)
            p["visits"] += 1
            child = parent
    return nodes


def reference_subtree(nodes, action):
    """AlphaGo Zero's reuse on a reference tree: the root's child along `action` and its
    descendants, renumbered in their old order (None if that child was never made)."""
    child = nodes[0]["children"].get(action)
    if child is None:
        return None
    keep = [child]
    for j in range(child + 1, len(nodes)):
        if nodes[j]["parent"] in keep:
            keep.append(j)
    index = {old: new for new, old in enumerate(keep)}
    out = []
    for old in keep:
        n = dict(nodes[old])
        n["parent"] = index.get(n["parent"], -1) if old != child else -1
        n["action"] = n["action"] if old != child else -1
        n["children"] = {a: index[c] for a, c in n["children"].items()}
        out.append(n)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_matches_sequential_reference(seed):
    tables = random_tables(seed)
    root_fn, recurrent_fn = table_model(tables)
    roots = jnp.array([0, 5, 17, 42, 99], jnp.int32)
    sims = 40
    out = jax.jit(
        lambda key, r: mcts.search(
            None, key, root_fn(r), recurrent_fn, sims, jnp.asarray(tables["invalid"])[r]
        )
    )(jax.random.PRNGKey(0), roots)
    tree = jax.tree.map(np.asarray, out.tree)
    for i, r in enumerate(np.asarray(roots)):
        ref = reference_search(tables, int(r), sims)
        assert len(ref) == sims + 1
        np.testing.assert_array_equal(tree.node_visits[i], [n["visits"] for n in ref])
        np.testing.assert_allclose(tree.node_values[i], [n["value"] for n in ref], atol=1e-5)
        np.testing.assert_array_equal(tree.parents[i], [n["parent"] for n in ref])
        np.testing.assert_array_equal(tree.action_from_parent[i], [n["action"] for n in ref])
        np.testing.assert_array_equal(tree.embeddings[i], [n["state"] for n in ref])
        root_visits = np.zeros(4, int)
        for a, child in ref[0]["children"].items():
            root_visits[a] = ref[child]["visits"]
        np.testing.assert_array_equal(tree.children_visits[i, 0], root_visits)
        np.testing.assert_allclose(
            out.action_weights[i], root_visits / root_visits.sum(), rtol=1e-6
        )
        assert root_visits.sum() == sims
        # invalid actions lead nowhere, at every node
        assert np.all(tree.children_index[i][tree.invalid_actions[i]] == mcts.UNEXPANDED)
    np.testing.assert_array_equal(out.action, np.argmax(out.action_weights, -1))


def assert_tree_is_reference(tree, i, ref):
    """Tree i of a batched tree holds exactly the reference's nodes, in its order."""
    k = len(ref)
    np.testing.assert_array_equal(tree.node_visits[i, :k], [n["visits"] for n in ref])
    np.testing.assert_array_equal(tree.node_visits[i, k:], 0)  # no node past them
    np.testing.assert_allclose(tree.node_values[i, :k], [n["value"] for n in ref], atol=1e-5)
    np.testing.assert_array_equal(tree.parents[i, :k], [n["parent"] for n in ref])
    np.testing.assert_array_equal(tree.action_from_parent[i, :k], [n["action"] for n in ref])
    np.testing.assert_array_equal(tree.embeddings[i, :k], [n["state"] for n in ref])
    for j, n in enumerate(ref):
        children = np.full(tree.children_index.shape[-1], mcts.UNEXPANDED)
        for a, c in n["children"].items():
            children[a] = c
            assert tree.children_visits[i, j, a] == ref[c]["visits"]
        np.testing.assert_array_equal(tree.children_index[i, j], children)


@pytest.mark.parametrize("seed", [0, 1])
def test_tree_reuse_matches_the_reference(seed):
    """Search 30 simulations in trees of 64 nodes, keep the subtree of the chosen action
    (`subtree`), search 30 more from it: every step equals the reference's. An action whose
    child was never made (an invalid one) leaves no node, and the next search starts afresh."""
    tables = random_tables(seed)
    root_fn, recurrent_fn = table_model(tables)
    roots = jnp.array([0, 5, 17, 42, 99], jnp.int32)
    key = jax.random.PRNGKey(0)

    @jax.jit
    def run(r, tree):
        return mcts.search(
            None, key, root_fn(r), recurrent_fn, 30, jnp.asarray(tables["invalid"])[r], tree=tree
        )

    first = run(roots, mcts.empty_tree(root_fn(roots), 64))
    assert first.tree.node_visits.shape == (5, 64)
    kept = jax.jit(mcts.subtree)(first.tree, first.action)
    nxt = jnp.asarray(next_state(np.asarray(roots), np.asarray(first.action), 101), jnp.int32)
    second = run(nxt, kept)
    first_t, kept_t, second_t = (
        jax.tree.map(np.asarray, x) for x in (first.tree, kept, second.tree)
    )
    for i, r in enumerate(np.asarray(roots)):
        ref = reference_search(tables, int(r), 30)
        assert_tree_is_reference(first_t, i, ref)
        sub = reference_subtree(ref, int(first.action[i]))
        assert_tree_is_reference(kept_t, i, sub)
        size = len(sub)
        assert size < 31  # the root's other children are gone
        ref2 = reference_search(tables, int(nxt[i]), 30, nodes=sub)  # (extends sub)
        assert_tree_is_reference(second_t, i, ref2)
        assert second_t.node_visits[i, 0] == size + 30
    # an invalid action was never expanded: no node is kept, the search starts afresh
    invalid = np.asarray(tables["invalid"])[np.asarray(roots)].argmax(-1)
    has_invalid = np.asarray(tables["invalid"])[np.asarray(roots)].any(-1)
    empty = mcts.subtree(first.tree, jnp.asarray(invalid))
    np.testing.assert_array_equal(np.asarray(empty.node_visits).sum(-1)[has_invalid], 0)
    fresh = run(roots, empty)
    for i, r in enumerate(np.asarray(roots)):
        if has_invalid[i]:
            assert_tree_is_reference(
                jax.tree.map(np.asarray, fresh.tree), i, reference_search(tables, int(r), 30)
            )


def test_empty_tree_reads_only_the_roots_shapes():
    """A jitted empty_tree(root_fn(...)) compiles without the root network: no dot product
    is left in the program, and the trees hold no node."""

    def root_fn(w, x):
        h = jnp.tanh(x @ w)
        return mcts.RootFnOutput(prior_logits=h[:, :3], value=h[:, 0], embedding=h)

    make = jax.jit(lambda w, x: mcts.empty_tree(root_fn(w, x), 9))
    w, x = jnp.ones((5, 4)), jnp.ones((2, 5))
    assert "dot(" not in make.lower(w, x).compile().as_text()
    tree = make(w, x)
    assert tree.embeddings.shape == (2, 9, 4) and tree.children_prior.shape == (2, 9, 3)
    assert int(tree.node_visits.sum()) == 0 and not np.asarray(tree.embeddings).any()


def test_tree_reuse_keeps_the_oldest_nodes_when_full():
    """A kept subtree larger than the room left (N - num_simulations) keeps its oldest
    nodes: a connected tree from the root, the edges to dropped nodes unexpanded but with
    their counts, so the root's visits still add up (N(s0) = 1 + sum_a N(s0, a))."""
    tables = random_tables(4)
    root_fn, recurrent_fn = table_model(tables)
    roots = jnp.array([1, 2, 3, 4], jnp.int32)
    invalid = jnp.asarray(tables["invalid"])[roots]
    key = jax.random.PRNGKey(1)
    first = mcts.search(
        None,
        key,
        root_fn(roots),
        recurrent_fn,
        39,
        invalid,
        tree=mcts.empty_tree(root_fn(roots), 40),
    )
    kept = mcts.subtree(first.tree, first.action)
    size = np.asarray(kept.node_visits > 0).sum(-1)
    assert np.all(size > 10), size  # bigger than the 10 nodes of room below
    nxt = jnp.asarray(next_state(np.asarray(roots), np.asarray(first.action), 101), jnp.int32)
    second = mcts.search(
        None, key, root_fn(nxt), recurrent_fn, 30, jnp.asarray(tables["invalid"])[nxt], tree=kept
    )
    t = jax.tree.map(np.asarray, second.tree)
    k = jax.tree.map(np.asarray, kept)
    for i in range(4):
        assert np.all(t.node_visits[i] > 0)  # 10 kept + 30 new nodes fill all 40
        assert t.node_visits[i, 0] == k.node_visits[i, 0] + 30
        assert t.children_visits[i, 0].sum() == t.node_visits[i, 0] - 1
        # the first 10 kept nodes are still there, with their links
        np.testing.assert_array_equal(t.parents[i, 1:10], k.parents[i, 1:10])
        np.testing.assert_array_equal(t.embeddings[i, :10], k.embeddings[i, :10])
        # every node hangs from an older one along the edge that names it
        for j in range(1, 40):
            p, a = t.parents[i, j], t.action_from_parent[i, j]
            assert 0 <= p < j and t.children_index[i, p, a] == j


def test_hand_computed_tree():
    """Two actions, uniform prior, a child's value is +1 after action 0 and -1 after action 1,
    reward 0, discount 1. PUCT goes 0 (prior tie, first index), then 0, 0 again (Q = 1 beats an
    unvisited 0 + U): a chain root -> 1 -> 2 -> 3."""

    def recurrent_fn(params, key, action, emb):  # noqa: ARG001
        value = jnp.where(action == 0, 1.0, -1.0)
        z = jnp.zeros_like(value)
        out = mcts.RecurrentFnOutput(z, z + 1, jnp.zeros((1, 2)), value, jnp.zeros((1, 2), bool))
        return out, emb

    root = mcts.RootFnOutput(jnp.zeros((1, 2)), jnp.zeros(1), jnp.zeros(1))
    out = mcts.search(None, jax.random.PRNGKey(0), root, recurrent_fn, 3)
    t = jax.tree.map(lambda x: np.asarray(x[0]), out.tree)
    np.testing.assert_array_equal(t.parents, [-1, 0, 1, 2])
    np.testing.assert_array_equal(t.node_visits, [4, 3, 2, 1])
    np.testing.assert_allclose(t.node_values, [0.75, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(t.children_visits[0], [3, 0])
    np.testing.assert_allclose(out.root_value, [0.75])
    assert int(out.action[0]) == 0
    # the scores at the root after the search, by the formula
    c = math.log((1 + 4 + C_BASE) / C_BASE) + C_INIT
    want = [1.0 + c * 0.5 * 2.0 / 4.0, 0.0 + c * 0.5 * 2.0 / 1.0]
    got = mcts.puct_scores(t, 0, C_INIT, C_BASE, 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_two_player_search_finds_the_winning_move():
    """A two-player model: action 2 wins at once (reward +1, the game ends: discount 0); the
    others hand the move to an opponent whose every reply wins for them. With a flat prior and
    zero values, the search must put most of its visits on action 2 and value the root +1."""

    def recurrent_fn(params, key, action, ended):  # noqa: ARG001
        # embedding: 0 = our move, 1 = opponent's move, 2 = over
        b = action.shape[0]
        reward = jnp.where(ended == 2, 0.0, jnp.where((ended == 0) & (action == 2), 1.0, 0.0))
        reward = jnp.where(ended == 1, 1.0, reward)  # any opponent reply wins for them
        over = (ended == 2) | (ended == 1) | (action == 2)
        discount = jnp.where(over, 0.0, -1.0)
        nxt = jnp.where(over, 2, 1)
        out = mcts.RecurrentFnOutput(
            reward, discount, jnp.zeros((b, 3)), jnp.zeros(b), jnp.zeros((b, 3), bool)
        )
        return out, nxt

    root = mcts.RootFnOutput(jnp.zeros((1, 3)), jnp.zeros(1), jnp.zeros(1, jnp.int32))
    out = mcts.search(None, jax.random.PRNGKey(0), root, recurrent_fn, 60)
    visits = np.asarray(out.tree.children_visits[0, 0])
    assert visits[2] > 0.8 * visits.sum()
    q = np.asarray(jax.tree.map(lambda x: x[0], out.tree).qvalues(0))
    assert q[2] == 1.0 and np.all(q[:2] <= 0.0)
    assert float(out.root_value[0]) > 0.8
    assert int(out.action[0]) == 2


def test_invalid_root_actions_are_never_taken():
    tables = random_tables(3)
    root_fn, recurrent_fn = table_model(tables)
    roots = jnp.arange(8, dtype=jnp.int32)
    invalid = jnp.zeros((8, 4), bool).at[:, 1:].set(True)  # only action 0 at the root
    out = mcts.search(
        None,
        jax.random.PRNGKey(1),
        root_fn(roots),
        recurrent_fn,
        16,
        invalid,
        dirichlet_fraction=0.25,
        temperature=1.0,
    )
    np.testing.assert_array_equal(out.action, 0)
    np.testing.assert_allclose(out.action_weights[:, 0], 1.0)


def test_dirichlet_root_prior():
    b, a = 4000, 5
    prior = jnp.full((b, a), 0.2)
    invalid = jnp.zeros((b, a), bool).at[:, 4].set(True)
    mixed = np.asarray(mcts.dirichlet_root_prior(jax.random.PRNGKey(0), prior, invalid, 0.3, 0.25))
    assert np.all(mixed[:, 4] == 0.0)
    # (1 - eps) * 0.2 on each valid action plus eps * eta, eta summing to 1 over 4 actions
    np.testing.assert_allclose(mixed.sum(-1), 0.75 * 0.8 + 0.25, rtol=1e-6)
    assert np.all(mixed[:, :4] >= 0.75 * 0.2 - 1e-7)
    # E[eta_a] = 1/4 over the valid actions
    np.testing.assert_allclose(((mixed[:, :4] - 0.15) / 0.25).mean(0), 0.25, atol=0.02)


def test_visit_policy():
    visits = jnp.array([[1, 3, 0, 4], [2, 2, 5, 1]])
    invalid = jnp.array([[False, False, False, False], [False, False, True, False]])
    np.testing.assert_allclose(mcts.visit_policy(visits, invalid, 1.0)[0], [1 / 8, 3 / 8, 0, 4 / 8])
    np.testing.assert_allclose(
        mcts.visit_policy(visits, invalid, 0.5)[0], np.array([1, 9, 0, 16]) / 26
    )
    greedy = mcts.visit_policy(visits, invalid, jnp.array([0.0, 0.0]))
    np.testing.assert_array_equal(greedy, [[0, 0, 0, 1], [1, 0, 0, 0]])  # invalid 5 ignored
    mixed = mcts.visit_policy(visits, invalid, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(mixed[1], [0.4, 0.4, 0.0, 0.2])


def test_bad_arguments():
    root = mcts.RootFnOutput(jnp.zeros((1, 2)), jnp.zeros(1), jnp.zeros(1))
    with pytest.raises(ValueError, match="num_simulations"):
        mcts.search(None, jax.random.PRNGKey(0), root, None, 0)
    with pytest.raises(ValueError, match="dirichlet_fraction"):
        mcts.search(None, jax.random.PRNGKey(0), root, None, 2, dirichlet_fraction=1.5)
