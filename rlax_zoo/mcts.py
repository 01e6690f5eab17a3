"""Monte-Carlo tree search with PUCT, batched and jitted (single file, vendorable).

Papers: Silver et al. 2017, "Mastering the game of Go without human knowledge" (AlphaGo Zero),
Methods, "Search algorithm"; Silver et al. 2018, "A general reinforcement learning algorithm
that masters chess, shogi, and Go through self-play" (AlphaZero), supplementary Methods and
pseudocode (the growing exploration rate c(s)).

Each simulation descends from the root by

  a_t = argmax_a [ Q(s, a) + U(s, a) ],
  U(s, a) = c(s) P(s, a) sqrt(N(s)) / (1 + N(s, a)),
  c(s) = log((1 + N(s) + c_base) / c_base) + c_init,                    (AlphaZero pseudocode)

until it picks an edge that leads to no node yet. That edge is expanded with one call of the
model (`recurrent_fn`: in AlphaZero the game's rules plus the network's (p, v)), and the leaf's
value is backed up the path: each edge's mean value W(s, a) / N(s, a) (AlphaGo Zero, "Backup").
N(s) counts the visits of s, its own expansion included, so the first simulation from a fresh
root follows the prior.

The model is general, as in mctx: an edge carries a reward r and a discount d, and

  Q(s, a) = r(s, a) + d(s, a) V(s'),

with V(s') the mean of the values backed up through the child s'. A two-player alternating
zero-sum game has r = the mover's reward and d = -1 (each node's value is for the player to
move there), and d = 0 after the game ends; a one-player MDP has d = gamma. An edge never
visited has Q = `unvisited_value` (0 by default: a draw in a game whose values lie in
[-1, 1]; AlphaZero's pseudocode also scores unvisited children 0).

Actions marked invalid (the root's `invalid_actions`, a model output's `invalid_actions` for
every other node) are never selected. With `dirichlet_fraction` eps > 0 the root's prior is
(1 - eps) P + eps eta, eta ~ Dir(alpha) over the valid actions (AlphaZero: eps = 0.25).

Layout (mctx's): the tree is one NamedTuple of fixed-shape arrays, batch B, nodes
N = num_simulations + 1, actions A; node 0 is the root, the node made by simulation k is k + 1.
Selection and backup are written for one tree and vmapped; the model is called once per
simulation for the whole batch. Shapes in the docstrings use these letters. Visit counts and
mean values are kept on the edges (N(s, a), Q's V(s')) as well as on the nodes, as AlphaGo
Zero stores its statistics on edges.

Tree reuse (AlphaGo Zero, "Search algorithm": "the child node corresponding to the played
action becomes the new root node; the subtree below this child is retained along with all its
statistics"): `subtree(tree, action)` keeps that child's subtree, renumbered from 0 in the same
order, and `search(..., tree=that)` runs num_simulations more simulations from it, the new
nodes numbered after the kept ones. Start a game's trees with `empty_tree(root, N)` for a
fixed N > num_simulations + 1; a search keeps at most the first N - num_simulations nodes of
the tree it is given (the oldest: a connected tree from the root), and an edge to a dropped
node keeps its count and value, so N(s) = 1 + sum_a N(s, a) still holds at every node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

Array = chex.Array

ROOT_INDEX = 0
UNEXPANDED = -1  # children_index of an edge that leads to no node yet
NO_PARENT = -1


class RootFnOutput(NamedTuple):
    """The model's output at the root: prior_logits [B, A], value [B] (for the player to move),
    embedding (any pytree with leading axis B: the state the model continues from)."""

    prior_logits: Array
    value: Array
    embedding: Any


class RecurrentFnOutput(NamedTuple):
    """The model's output for one edge per tree: reward [B] (to the player who acted),
    discount [B] (-1 between two alternating players, 0 after the end, gamma in an MDP),
    prior_logits [B, A] and value [B] at the new node, and invalid_actions [B, A] bool there."""

    reward: Array
    discount: Array
    prior_logits: Array
    value: Array
    invalid_actions: Array


# recurrent_fn(params, key, action [B] int32, embedding [B, ...])
#   -> (RecurrentFnOutput, next embedding [B, ...])
RecurrentFn = Callable[[Any, Array, Array, Any], tuple[RecurrentFnOutput, Any]]


class Tree(NamedTuple):
    """A batch of search trees: B trees of N nodes with A actions each.

    node_visits [B, N] int32: N(s), 0 for nodes not made yet.
    node_values [B, N]: the mean of the values backed up through the node (its own first).
    raw_values [B, N]: the model's value at the node.
    parents, action_from_parent [B, N] int32: the edge that made the node (-1 at the root).
    children_index [B, N, A] int32: the node an edge leads to, -1 if none yet.
    children_prior [B, N, A]: P(s, a) (0 for invalid actions).
    children_visits [B, N, A] int32: N(s, a).
    children_values [B, N, A]: V(s') of the child (0 where none).
    children_rewards, children_discounts [B, N, A]: r(s, a) and d(s, a) of expanded edges.
    invalid_actions [B, N, A] bool.
    embeddings: the model's states, a pytree with leading axes [B, N].
    """

    node_visits: Array
    node_values: Array
    raw_values: Array
    parents: Array
    action_from_parent: Array
    children_index: Array
    children_prior: Array
    children_visits: Array
    children_values: Array
    children_rewards: Array
    children_discounts: Array
    invalid_actions: Array
    embeddings: Any

    @property
    def num_actions(self) -> int:
        return self.children_index.shape[-1]

    def qvalues(self, node: Array) -> Array:
        """Q(s, a) = r + d V(s') of one tree's node `node` (unbatched tree): [A]; 0 where
        unvisited (the score uses `unvisited_value` there instead)."""
        return (
            self.children_rewards[node] + self.children_discounts[node] * self.children_values[node]
        )


class SearchOutput(NamedTuple):
    """action [B] int32: chosen from the root's visit counts (see `visit_policy`);
    action_weights [B, A]: the root's visit-count distribution N(s0, a) / sum_b N(s0, b), the
    policy target pi of AlphaGo Zero's loss; root_value [B]: the root's backed-up mean value;
    tree: the whole Tree."""

    action: Array
    action_weights: Array
    root_value: Array
    tree: Tree


def puct_scores(
    tree: Tree, node: Array, pb_c_init: float, pb_c_base: float, unvisited_value: float
) -> Array:
    """Q(s, a) + U(s, a) of one (unbatched) tree's node, -inf at invalid actions: [A].

    AlphaZero pseudocode: U = c(s) P(s, a) sqrt(N(s)) / (1 + N(s, a)) with
    c(s) = log((1 + N(s) + c_base) / c_base) + c_init.
    """
    visits = tree.children_visits[node]
    parent_visits = tree.node_visits[node].astype(jnp.float32)
    c = jnp.log((1.0 + parent_visits + pb_c_base) / pb_c_base) + pb_c_init
    u = c * tree.children_prior[node] * jnp.sqrt(parent_visits) / (1.0 + visits)
    q = jnp.where(visits > 0, tree.qvalues(node), unvisited_value)
    return jnp.where(tree.invalid_actions[node], -jnp.inf, q + u)


def _masked_softmax(logits: Array, invalid: Array) -> Array:
    """softmax over the valid actions, 0 at invalid ones (uniform 0 if none is valid): [..., A]."""
    logits = jnp.where(invalid, -jnp.inf, logits)
    top = jnp.max(logits, axis=-1, keepdims=True)
    e = jnp.where(invalid, 0.0, jnp.exp(logits - jnp.where(jnp.isfinite(top), top, 0.0)))
    return e / jnp.maximum(e.sum(-1, keepdims=True), jnp.finfo(e.dtype).tiny)


def dirichlet_root_prior(
    key: Array, prior: Array, invalid: Array, alpha: float, fraction: float
) -> Array:
    """AlphaZero's root exploration noise: (1 - eps) P + eps eta, eta ~ Dir(alpha) over the
    valid actions only. prior, invalid [B, A] -> [B, A] (0 at invalid actions, rows sum to 1)."""
    g = jax.random.gamma(key, alpha, prior.shape)
    g = jnp.where(invalid, 0.0, g)
    eta = g / jnp.maximum(g.sum(-1, keepdims=True), jnp.finfo(g.dtype).tiny)
    return jnp.where(invalid, 0.0, (1.0 - fraction) * prior + fraction * eta)


def _empty_tree(root: RootFnOutput, root_invalid: Array, prior: Array, num_nodes: int) -> Tree:
    b, a = prior.shape
    f32 = prior.dtype

    def nodes(leaf):
        out = jnp.zeros((b, num_nodes) + leaf.shape[1:], leaf.dtype)
        return out.at[:, ROOT_INDEX].set(leaf)

    value = root.value.astype(f32)
    return Tree(
        node_visits=jnp.zeros((b, num_nodes), jnp.int32).at[:, ROOT_INDEX].set(1),
        node_values=nodes(value),
        raw_values=nodes(value),
        parents=jnp.full((b, num_nodes), NO_PARENT, jnp.int32),
        action_from_parent=jnp.full((b, num_nodes), NO_PARENT, jnp.int32),
        children_index=jnp.full((b, num_nodes, a), UNEXPANDED, jnp.int32),
        children_prior=nodes(prior),
        children_visits=jnp.zeros((b, num_nodes, a), jnp.int32),
        children_values=jnp.zeros((b, num_nodes, a), f32),
        children_rewards=jnp.zeros((b, num_nodes, a), f32),
        children_discounts=jnp.zeros((b, num_nodes, a), f32),
        invalid_actions=nodes(root_invalid),
        embeddings=jax.tree.map(nodes, root.embedding),
    )


def _continued_tree(
    root: RootFnOutput, invalid: Array, prior: Array, tree: Tree, num_simulations: int
) -> Tree:
    """`search`'s start from a given tree (see its `tree` argument): [B, N, ...]."""
    chex.assert_shape(tree.node_visits, (prior.shape[0], None))
    num_nodes = tree.node_visits.shape[1]
    if num_nodes < num_simulations + 1:
        raise ValueError(
            f"tree: must have at least num_simulations + 1 = {num_simulations + 1} nodes, "
            f"got {num_nodes}"
        )
    has_root = tree.node_visits[:, ROOT_INDEX] > 0
    nodes = jnp.arange(num_nodes)
    tree = jax.vmap(
        lambda t: _compact(t, t.node_visits > 0, nodes == ROOT_INDEX, num_nodes - num_simulations)
    )(tree)
    tree = tree._replace(
        children_prior=tree.children_prior.at[:, ROOT_INDEX].set(prior),
        invalid_actions=tree.invalid_actions.at[:, ROOT_INDEX].set(invalid),
    )
    fresh = _empty_tree(root, invalid, prior, num_nodes)

    def pick(kept, new):
        return jnp.where(has_root.reshape((-1,) + (1,) * (kept.ndim - 1)), kept, new)

    return jax.tree.map(pick, tree, fresh)


def _select(tree: Tree, pb_c_init, pb_c_base, unvisited_value) -> tuple[Array, Array]:
    """Descend one (unbatched) tree by PUCT to the first edge with no node: (parent, action).

    A descent is at most N - 1 edges long, since every step goes to an existing node."""

    def step(carry):
        node, _, _ = carry
        action = jnp.argmax(puct_scores(tree, node, pb_c_init, pb_c_base, unvisited_value))
        child = tree.children_index[node, action]
        return jnp.where(child == UNEXPANDED, node, child), action, child != UNEXPANDED

    node, action, _ = jax.lax.while_loop(
        lambda carry: carry[2], step, (jnp.int32(ROOT_INDEX), jnp.int32(0), jnp.bool_(True))
    )
    return node, action.astype(jnp.int32)


def _expand(tree: Tree, new: Array, parent: Array, action: Array, out, embedding) -> Tree:
    """Write the node `new` (one int per tree) made by the edge (parent, action): [B] each."""
    b = jnp.arange(tree.node_visits.shape[0])
    prior = _masked_softmax(out.prior_logits, out.invalid_actions)
    value = out.value.astype(tree.node_values.dtype)
    return tree._replace(
        node_visits=tree.node_visits.at[b, new].set(1),
        node_values=tree.node_values.at[b, new].set(value),
        raw_values=tree.raw_values.at[b, new].set(value),
        parents=tree.parents.at[b, new].set(parent),
        action_from_parent=tree.action_from_parent.at[b, new].set(action),
        children_index=tree.children_index.at[b, parent, action].set(new),
        children_prior=tree.children_prior.at[b, new].set(prior),
        children_rewards=tree.children_rewards.at[b, parent, action].set(out.reward),
        children_discounts=tree.children_discounts.at[b, parent, action].set(out.discount),
        invalid_actions=tree.invalid_actions.at[b, new].set(out.invalid_actions),
        embeddings=jax.tree.map(lambda e, x: e.at[b, new].set(x), tree.embeddings, embedding),
    )


def _backup(tree: Tree, leaf: Array) -> Tree:
    """Back the value of one (unbatched) tree's new leaf up to the root (AlphaGo Zero, Backup):
    G <- r(s, a) + d(s, a) G along the path; every node on it gets one more visit and G in its
    mean."""

    def body(carry):
        tree, node, g = carry
        parent, action = tree.parents[node], tree.action_from_parent[node]
        # the edge's own statistics take the child's value g (they equal the child node's
        # unless `subtree` dropped an older node along this edge)
        n_edge = tree.children_visits[parent, action]
        edge_value = (tree.children_values[parent, action] * n_edge + g) / (n_edge + 1)
        g = tree.children_rewards[parent, action] + tree.children_discounts[parent, action] * g
        n = tree.node_visits[parent]
        value = (tree.node_values[parent] * n + g) / (n + 1)
        tree = tree._replace(
            node_visits=tree.node_visits.at[parent].set(n + 1),
            node_values=tree.node_values.at[parent].set(value),
            children_visits=tree.children_visits.at[parent, action].set(n_edge + 1),
            children_values=tree.children_values.at[parent, action].set(edge_value),
        )
        return tree, parent, g

    tree, _, _ = jax.lax.while_loop(
        lambda carry: carry[1] != ROOT_INDEX, body, (tree, leaf, tree.raw_values[leaf])
    )
    return tree


def _compact(tree: Tree, keep: Array, new_root: Array, limit: int) -> Tree:
    """One (unbatched) tree with only the nodes `keep` [N] bool, renumbered in their order
    from 0 (`new_root` [N] bool marks the one that becomes the root: no parent). Only the
    first `limit` kept nodes stay; an edge to a dropped node becomes unexpanded and keeps
    its visit count and value. Same shapes as `tree`; the rest of it holds no node."""
    n = tree.node_visits.shape[0]
    position = jnp.cumsum(keep) - 1
    keep = keep & (position < limit)
    new_index = jnp.where(keep, position, UNEXPANDED).astype(jnp.int32)
    target = jnp.where(keep, position, n)  # n: out of bounds, dropped by the scatter

    def move(leaf, empty):
        return jnp.full_like(leaf, empty).at[target].set(leaf, mode="drop")

    def renumber(index):
        return jnp.where(index >= 0, new_index[jnp.maximum(index, 0)], index)

    parents = jnp.where(new_root, NO_PARENT, renumber(tree.parents))
    action_from_parent = jnp.where(new_root, NO_PARENT, tree.action_from_parent)
    return Tree(
        node_visits=move(tree.node_visits, 0),
        node_values=move(tree.node_values, 0),
        raw_values=move(tree.raw_values, 0),
        parents=move(parents, NO_PARENT),
        action_from_parent=move(action_from_parent, NO_PARENT),
        children_index=move(renumber(tree.children_index), UNEXPANDED),
        children_prior=move(tree.children_prior, 0),
        children_visits=move(tree.children_visits, 0),
        children_values=move(tree.children_values, 0),
        children_rewards=move(tree.children_rewards, 0),
        children_discounts=move(tree.children_discounts, 0),
        invalid_actions=move(tree.invalid_actions, False),
        embeddings=jax.tree.map(lambda e: move(e, 0), tree.embeddings),
    )


def subtree(tree: Tree, action: Array) -> Tree:
    """AlphaGo Zero's tree reuse (Methods, "Search algorithm"): the root's child along
    `action` [B] becomes the new root, "the subtree below this child is retained along with
    all its statistics, while the remainder of the tree is discarded". Nodes keep their
    order (parents before children) from index 0; a tree whose root has no child along
    `action` comes back with no node, and `search` starts it from its root afresh.
    tree: Tree [B, N, ...] -> Tree of the same shapes."""
    n = tree.node_visits.shape[1]
    rounds = max(1, (n - 1).bit_length())

    def one(t: Tree, a: Array) -> Tree:
        child = t.children_index[ROOT_INDEX, a]
        nodes = jnp.arange(n)
        inside = nodes == child  # the child is an ancestor-or-self, within 2^k steps
        ancestor = t.parents  # the 2^k-th ancestor, -1 past the root
        for _ in range(rounds):
            valid = ancestor >= 0
            inside = inside | (valid & inside[jnp.maximum(ancestor, 0)])
            ancestor = jnp.where(valid, ancestor[jnp.maximum(ancestor, 0)], NO_PARENT)
        return _compact(t, inside, nodes == child, n)

    return jax.vmap(one)(tree, action.astype(jnp.int32))


def empty_tree(root: RootFnOutput, num_nodes: int) -> Tree:
    """A batch of trees with no node, shaped for `root` (prior_logits [B, A], value [B],
    embedding) and `num_nodes` nodes: what `search(..., tree=)` takes before a game's first
    move. Only root's shapes and dtypes are read, so under `jax.jit` the computation of root
    is dead code."""
    root = jax.tree.map(jnp.zeros_like, root)
    b, a = root.prior_logits.shape
    tree = _empty_tree(root, jnp.zeros((b, a), bool), jnp.zeros((b, a), jnp.float32), num_nodes)
    return tree._replace(node_visits=jnp.zeros_like(tree.node_visits))


def visit_policy(visits: Array, invalid: Array, temperature: Array | float) -> Array:
    """The root's visit counts as a policy, pi(a) proportional to N(s0, a)^(1 / tau)
    (AlphaGo Zero, "Play"); tau = 0 puts all mass on the most visited action (the first of a
    tie). visits, invalid [B, A]; temperature a scalar or [B] -> [B, A]."""
    tau = jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), visits.shape[:1])[:, None]
    n = jnp.where(invalid, 0, visits).astype(jnp.float32)
    greedy = jax.nn.one_hot(jnp.argmax(n, -1), n.shape[-1], dtype=n.dtype)
    logn = jnp.where(n > 0, jnp.log(jnp.maximum(n, 1.0)), -jnp.inf)
    soft = _masked_softmax(logn / jnp.where(tau > 0, tau, 1.0), n <= 0)
    return jnp.where(tau > 0, soft, greedy)


def search(
    params: Any,
    key: Array,
    root: RootFnOutput,
    recurrent_fn: RecurrentFn,
    num_simulations: int,
    invalid_actions: Array | None = None,
    pb_c_init: float = 1.25,
    pb_c_base: float = 19652.0,
    unvisited_value: float = 0.0,
    dirichlet_fraction: float = 0.0,
    dirichlet_alpha: float = 0.3,
    temperature: Array | float = 0.0,
    tree: Tree | None = None,
) -> SearchOutput:
    """Run `num_simulations` PUCT simulations from each of B roots (AlphaZero search).

    Args:
      params: passed to recurrent_fn.
      key: PRNG key (root noise, the model's own randomness, the action draw).
      root: the model's output at the roots: prior_logits [B, A], value [B], embedding.
      recurrent_fn: (params, key, action [B], embedding) -> (RecurrentFnOutput, embedding).
      num_simulations: simulations per root (N = num_simulations + 1 nodes), >= 1.
      invalid_actions: [B, A] bool, actions the root may not take (default: none).
      pb_c_init, pb_c_base: c_init and c_base of c(s) (AlphaZero: 1.25 and 19652).
      unvisited_value: Q of an edge never visited.
      dirichlet_fraction, dirichlet_alpha: the root noise eps and alpha (eps = 0: none).
      temperature: tau of `visit_policy` for the returned action, scalar or [B].
      tree: a tree to continue (`subtree` of the last search's, for tree reuse; its N may
        exceed num_simulations + 1): its root's statistics and subtree are kept, and its
        root's prior is `root`'s (with fresh noise). Where it holds no node the root starts
        afresh. To make room for the new simulations, only its first
        N - num_simulations nodes are kept (the oldest; an edge to a dropped node keeps
        its visit count and value, and a later simulation makes the node again).
    Returns:
      SearchOutput(action [B], action_weights [B, A], root_value [B], tree).
    """
    chex.assert_rank(root.prior_logits, 2)
    b, a = root.prior_logits.shape
    chex.assert_shape(root.value, (b,))
    if num_simulations < 1:
        raise ValueError(f"num_simulations: must be >= 1, got {num_simulations}")
    if not 0.0 <= dirichlet_fraction <= 1.0:
        raise ValueError(f"dirichlet_fraction: must be in [0, 1], got {dirichlet_fraction}")
    if invalid_actions is None:
        invalid_actions = jnp.zeros((b, a), bool)
    chex.assert_shape(invalid_actions, (b, a))
    noise_key, sim_key, action_key = jax.random.split(key, 3)
    prior = _masked_softmax(root.prior_logits.astype(jnp.float32), invalid_actions)
    if dirichlet_fraction > 0.0:
        prior = dirichlet_root_prior(
            noise_key, prior, invalid_actions, dirichlet_alpha, dirichlet_fraction
        )
    if tree is None:
        tree = _empty_tree(root, invalid_actions, prior, num_simulations + 1)
        used = jnp.ones((b,), jnp.int32)
    else:
        tree = _continued_tree(root, invalid_actions, prior, tree, num_simulations)
        used = jnp.sum(tree.node_visits > 0, axis=1).astype(jnp.int32)
    select = jax.vmap(lambda t: _select(t, pb_c_init, pb_c_base, unvisited_value))
    b_index = jnp.arange(b)

    def simulate(sim, tree):
        parent, action = select(tree)
        embedding = jax.tree.map(lambda e: e[b_index, parent], tree.embeddings)
        out, next_embedding = recurrent_fn(
            params, jax.random.fold_in(sim_key, sim), action, embedding
        )
        new = used + sim
        tree = _expand(tree, new, parent, action, out, next_embedding)
        return jax.vmap(_backup)(tree, new)

    tree = jax.lax.fori_loop(0, num_simulations, simulate, tree)
    root_visits = tree.children_visits[:, ROOT_INDEX]
    weights = visit_policy(root_visits, invalid_actions, 1.0)
    policy = visit_policy(root_visits, invalid_actions, temperature)
    action = jax.random.categorical(
        action_key, jnp.where(policy > 0, jnp.log(jnp.maximum(policy, 1e-30)), -jnp.inf)
    ).astype(jnp.int32)
    return SearchOutput(action, weights, tree.node_values[:, ROOT_INDEX], tree)
