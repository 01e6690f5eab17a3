"""Experience replay: uniform and prioritized, as pure jittable functions over a state pytree.

Paper: Schaul, Quan, Antonoglou & Silver (2016), "Prioritized Experience Replay", ICLR.

A buffer is a frozen bundle of four pure functions (`init`, `add`, `sample`, `set_priorities`)
over a `ReplayState` of fixed-shape arrays, in the style of flashbax. Every function can be
`jax.jit`-ed; `add` and `set_priorities` are meant to be jitted with `donate_argnums=0` so the
storage and trees are rewritten in place::

    buffer = prioritized_replay(capacity=100_000, batch_size=256)
    state = buffer.init(example_transition)                 # no batch axis
    add = jax.jit(buffer.add, donate_argnums=0)
    set_priorities = jax.jit(buffer.set_priorities, donate_argnums=0)
    state = add(state, transitions)                         # leading [K] axis
    batch = jax.jit(buffer.sample)(state, key, 0.4)         # batch.items: leading [B] axis
    state = set_priorities(state, batch.indices, jnp.abs(td_error))

Conventions (the paper's notation, Section 3.3 / Algorithm 1):

* `p_i = |delta_i| + eps` is the raw priority of slot `i`; `set_priorities` takes `|delta|` (it
  applies `abs` itself, so signed TD errors are fine) and adds `eps` itself.
* A new item gets the maximal priority seen so far, `p_t = max_{i<t} p_i` (Algorithm 1 line 6),
  with `p_1 = 1` (line 2). The running maximum is a float32 scalar and never decreases.
* `P(i) = p_i^alpha / sum_k p_k^alpha` (Eq. 1), over the `N` stored items only.
* Importance weights (Section 3.4, Algorithm 1 line 10) are
  `w_i = (N * P(i))^-beta / max_j (N * P(j))^-beta`, where `N` is the current number of stored
  items and the max runs over the *whole buffer* (not just the batch): it is attained at the item
  of smallest probability, so `w_i = (P(i) / min_j P(j))^-beta`, which is how it is computed
  (`N` cancels). The proportional variant keeps a min tree so `min_j P(j)` is exact. With
  `normalise_weights="batch"` the max runs over the sampled batch instead (as Dopamine and
  most implementations do), and no min tree is kept.

Sampling before anything was added cannot raise inside jit: the caller must `add` at least one
item first (otherwise the returned indices point at an empty slot and the probabilities are
meaningless, NaN for the proportional buffer). Stored items always occupy slots `[0, size)`.

Numerics of the sum tree: leaves are *set* and every affected ancestor is *recomputed* as
`left + right` from its children (see `tree_set`: one batched gather/scatter per level, or a
dense rebuild for very large batches). Nothing is
ever updated by adding a delta, so after any number of updates every node, the root included, is
exactly the float32 pairwise (tree-order) sum of its leaves: no drift. The running max priority
is a float32 scalar (flashbax 0.1.3 stores it with an integer dtype, so 2.7 becomes 2).

This file is vendorable: it imports only jax, chex, numpy and the standard library.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
KINDS = ("proportional", "rank")
TREE_IMPLS = ("auto", "levels", "walk", "batched")
NORMALISATIONS = ("buffer", "batch")


@chex.dataclass(frozen=True)
class ReplayState:
    """State of a replay buffer: fixed-shape arrays only (donation-friendly).

    Schaul et al. 2016, Algorithm 1 line 2 (replay memory H, initial priority p_1 = 1).

    Attributes:
      storage: pytree like the item example, every leaf with a leading `[capacity]` axis.
      position: int32 `[]`, the next slot `add` writes (ring buffer).
      size: int32 `[]`, number of stored items `N`, `0 <= N <= capacity`; stored slots are
        `[0, N)`.
      priorities: float32 `[capacity]`, raw priorities `p_i = |delta_i| + eps` (0 in empty slots).
        Shape `[0]` for a uniform buffer.
      sum_tree: float32 `[2 L]` with `L` the smallest power of two `>= capacity`, in heap layout:
        node 1 is the root, node `n` has children `2n, 2n+1`, leaf `i` is node `L + i` and holds
        `p_i^alpha` (0 when empty); node `n` holds the sum of the leaves below it; entry 0 is
        unused. Shape `[0]` unless proportional.
      min_tree: float32 `[2 L]`, the same layout holding minima (`+inf` when empty): the exact
        importance-weight normaliser `min_j P(j)` (Section 3.4). Shape `[0]` unless
        proportional.
      max_priority: float32 `[]`, `max_{i<t} p_i` given to new items (Algorithm 1 line 6).
    """

    storage: PyTree
    position: jax.Array
    size: jax.Array
    priorities: jax.Array
    sum_tree: jax.Array
    min_tree: jax.Array
    max_priority: jax.Array


class ReplaySample(NamedTuple):
    """A sampled minibatch (Schaul et al. 2016, Algorithm 1 lines 9-10).

    Attributes:
      indices: int32 `[B]`, slots of the sampled items (pass them back to `set_priorities`).
      items: pytree with leading `[B]` axis.
      weights: float32 `[B]`, importance weights `(N P(i))^-beta / max_j (N P(j))^-beta`
        (Section 3.4); all ones for uniform replay.
      probabilities: float32 `[B]`, `P(i)` of each sampled item (Eq. 1); `1/N` for uniform.
    """

    indices: jax.Array
    items: PyTree
    weights: jax.Array
    probabilities: jax.Array


@dataclasses.dataclass(frozen=True)
class ReplayBuffer:
    """A replay buffer as a frozen bundle of pure functions (like flashbax).

    Schaul et al. 2016, Algorithm 1: `add` is line 6, `sample` lines 9-10, `set_priorities`
    line 12.

    Attributes:
      init: `init(item) -> ReplayState`; `item` is one example item (no batch axis).
      add: `add(state, items) -> ReplayState`; `items` has a leading `[K]` axis; ring buffer,
        the oldest items are overwritten. Jit with `donate_argnums=0`.
      sample: `sample(state, key, beta) -> ReplaySample` of `batch_size` items; `beta` (scalar,
        may be traced) is ignored by uniform replay. Requires `size >= 1`.
      set_priorities: `set_priorities(state, indices [B], priorities [B]) -> ReplayState` with
        `priorities = |delta|`; a no-op for uniform replay. Jit with `donate_argnums=0`.
      capacity: maximum number of stored items.
      batch_size: number of items `sample` returns.
    """

    init: Callable[[PyTree], ReplayState]
    add: Callable[[ReplayState, PyTree], ReplayState]
    sample: Callable[..., ReplaySample]
    set_priorities: Callable[[ReplayState, jax.Array, jax.Array], ReplayState]
    capacity: int
    batch_size: int


# ----------------------------------------------------------------------------------------------
# Argument validation (Python side, before tracing).


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _check_float(name: str, value: Any, *, strictly_positive: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite float, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (strictly_positive and value == 0):
        allowed = "> 0" if strictly_positive else ">= 0"
        raise ValueError(f"{name} must be a finite float {allowed}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------
# Storage helpers shared by all buffers.


def _init_storage(item: PyTree, capacity: int) -> PyTree:
    def zeros(x):
        x = jnp.asarray(x)
        return jnp.zeros((capacity, *x.shape), x.dtype)

    return jax.tree.map(zeros, item)


def _num_items(storage: PyTree, items: PyTree) -> int:
    """Checks `items` against `storage` (trace time) and returns the static leading size K."""
    storage_def = jax.tree.structure(storage)
    items_def = jax.tree.structure(items)
    if storage_def != items_def:
        raise ValueError(
            f"items must have the pytree structure of the item given to init: expected "
            f"{storage_def}, got {items_def}"
        )
    sizes = set()
    for buf, x in zip(jax.tree.leaves(storage), jax.tree.leaves(items), strict=True):
        shape = jnp.shape(x)
        if len(shape) != buf.ndim or tuple(shape[1:]) != buf.shape[1:]:
            raise ValueError(
                f"items must have a leading [K] axis followed by the item shape "
                f"{buf.shape[1:]}, got a leaf of shape {shape}"
            )
        sizes.add(shape[0])
    if len(sizes) > 1:
        raise ValueError(f"all leaves of items must share the leading [K] axis, got {sizes}")
    return sizes.pop() if sizes else 0


def _ring_slots(state: ReplayState, items: PyTree, capacity: int):
    """Slots written by adding `items` [K]; keeps only the newest `capacity` items if K > C."""
    k = _num_items(state.storage, items)
    skip = max(0, k - capacity)
    if skip:
        items = jax.tree.map(lambda x: x[skip:], items)
    slots = (state.position + skip + jnp.arange(k - skip, dtype=jnp.int32)) % capacity
    storage = jax.tree.map(
        lambda buf, x: buf.at[slots].set(
            jnp.asarray(x, buf.dtype), unique_indices=True, mode="promise_in_bounds"
        ),
        state.storage,
        items,
    )
    position = ((state.position + k) % capacity).astype(jnp.int32)
    size = jnp.minimum(state.size + k, capacity).astype(jnp.int32)
    return slots, storage, position, size


def _gather(storage: PyTree, indices: jax.Array) -> PyTree:
    return jax.tree.map(lambda buf: jnp.take(buf, indices, axis=0, mode="clip"), storage)


def _stratified_targets(key: chex.PRNGKey, batch_size: int, total: jax.Array) -> jax.Array:
    """Appendix B.2.1: split [0, total) into `batch_size` equal segments, one uniform draw each.

    The draws are clipped strictly below `total` (float rounding at the right edge).
    """
    segment = total / batch_size
    u = jax.random.uniform(key, (batch_size,), jnp.float32)
    targets = jnp.arange(batch_size, dtype=jnp.float32) * segment + u * segment
    return jnp.clip(targets, 0.0, jnp.nextafter(total, jnp.float32(0.0)))


# ----------------------------------------------------------------------------------------------
# Sum / min tree over a power-of-two number of leaves (heap layout, root at node 1).


def _num_leaves(capacity: int) -> int:
    return 1 << (capacity - 1).bit_length()


def empty_trees(num_leaves: int) -> tuple[jax.Array, jax.Array]:
    """`(sum_tree, min_tree)`, both float32 `[2 L]`, for `L = num_leaves` empty leaves."""
    rows = 2 * num_leaves
    return jnp.zeros((rows,), jnp.float32), jnp.full((rows,), jnp.inf, jnp.float32)


def _tree_path(num_leaves: int, batch: int, tree_impl: str) -> str:
    """How `tree_set` writes the leaves and recomputes the ancestors (static; see there)."""
    depth = num_leaves.bit_length() - 1
    if depth == 0 or batch * depth >= 2 * num_leaves:
        return "rebuild"
    if tree_impl == "auto":  # decided when the function is traced
        return "levels" if jax.default_backend() == "cpu" else "batched"
    return tree_impl


def _ordered_set(arrays, offsets, slots: jax.Array, values, write: jax.Array, walk=()):
    """`array[offset + slots[b]] = value[b]` for each (array, offset, value) and each `b` in
    order where `write[b]`, in one loop (the last duplicate wins). `walk` = (depth, combines):
    the first `len(combines)` arrays are trees whose `depth` ancestors of each written leaf are
    then recomputed by a scalar walk, node = combine(left, right)."""

    def body(b, arrays):
        out = []
        for array, offset, value in zip(arrays, offsets, values, strict=True):
            slot = jnp.where(write[b], slots[b], 0) + offset
            current = jax.lax.dynamic_index_in_dim(array, slot, keepdims=False)
            new = jnp.where(write[b], value[b].astype(array.dtype), current)
            out.append(jax.lax.dynamic_update_index_in_dim(array, new, slot, 0))
        if walk:
            depth, combines = walk

            def up(_, carry):
                node, *trees = carry
                node = node // 2
                new_trees = []
                for tree, combine in zip(trees, combines, strict=True):
                    pair = jax.lax.dynamic_slice_in_dim(tree, 2 * node, 2)
                    parent = combine(pair[0], pair[1])
                    new_trees.append(jax.lax.dynamic_update_index_in_dim(tree, parent, node, 0))
                return (node, *new_trees)

            node = jnp.where(write[b], slots[b], 0) + offsets[0]
            k = len(combines)
            out[:k] = jax.lax.fori_loop(0, depth, up, (node, *out[:k]))[1:]
        return tuple(out)

    return jax.lax.fori_loop(0, slots.shape[0], body, tuple(arrays))


def tree_set(
    sum_tree: jax.Array,
    min_tree: jax.Array,
    slots: jax.Array,
    leaves: jax.Array,
    write: jax.Array,
    tree_impl: str = "auto",
    extra: tuple = (),
) -> tuple[jax.Array, ...]:
    """Sets leaves `slots[write]` to `leaves[write]`, then recomputes every affected ancestor.

    Sum tree of Schaul et al. 2016, Appendix B.2.1, plus a min tree beside it. `sum_tree`,
    `min_tree` float32 `[2 L]` in heap layout (node 1 is the root, node `n` has children `2n`
    and `2n + 1`, leaf `i` is node `L + i`); a `min_tree` of shape `[0]` is no tree (returned as
    is, nothing is spent on it). `slots` int32, `leaves` (`p^alpha`), `write` bool, all `[B]`;
    entries with `write=False` change nothing. Returns `(sum_tree, min_tree)`. `extra` is a
    tuple of `(array, values [B])` pairs written at the same slots in the same way (the raw
    priorities); their new arrays follow the trees in the returned tuple.

    No delta is ever added: every ancestor is *set* to `(left + right, min(left, right))` of its
    (already final) children, so each node always equals the exact float32 reduction of its
    subtree in tree order and the root cannot drift. Four strategies, chosen statically, give
    bit-identical trees:

    * "levels": the leaves are written one at a time in a `fori_loop`, in order (a repeated
      slot keeps its last value), then the ancestors are recomputed one level at a time for the
      whole batch (one gather and one scatter per level; a parent shared by several entries is
      written several times with the same value). Fastest on CPU with one XLA intra-op thread
      (`rlax_zoo/xla_cpu.py`).
    * "walk": the same in-order writes, each followed by a scalar walk up to the root; tiny
      scalar kernels only, for CPU with XLA's default multi-threaded pool, where every batched
      kernel pays a hand-over between threads.
    * "batched": the leaves in one scatter (slots with `write=True` must then be unique), then
      the levels as above (GPU/TPU).
    * "rebuild", used whenever `B log2(L) >= 2 L`: one scatter (unique slots, as for
      "batched"), then every level recomputed densely.

    `tree_impl="auto"` picks "levels" on the CPU backend and "batched" elsewhere.
    """
    num_leaves = sum_tree.shape[0] // 2
    depth = num_leaves.bit_length() - 1
    path = _tree_path(num_leaves, slots.shape[0], tree_impl)
    leaves = leaves.astype(sum_tree.dtype)
    trees, combines = [sum_tree], [jnp.add]
    if min_tree.shape[0]:
        trees, combines = [sum_tree, min_tree], [jnp.add, jnp.minimum]
    k = len(trees)
    arrays = trees + [array for array, _ in extra]
    values = [leaves] * k + [v for _, v in extra]
    offsets = [num_leaves] * k + [0] * len(extra)
    if path == "walk":
        written = _ordered_set(arrays, offsets, slots, values, write, walk=(depth, combines))
    elif path == "levels":
        written = _ordered_set(arrays, offsets, slots, values, write)
    else:
        written = []
        for array, offset, value in zip(arrays, offsets, values, strict=True):
            target = jnp.where(write, slots + offset, array.shape[0])  # out of range: dropped
            written.append(array.at[target].set(value.astype(array.dtype), mode="drop"))
    trees, extra_out = list(written[:k]), list(written[k:])
    if path == "rebuild":
        for level in range(depth - 1, -1, -1):
            width = 1 << level  # nodes [width, 2 width), children [2 width, 4 width)
            for i, combine in enumerate(combines):
                children = trees[i][2 * width : 4 * width]
                parents = combine(children[0::2], children[1::2])
                trees[i] = trees[i].at[width : 2 * width].set(parents)
    elif path != "walk":
        # Entries that did not write recompute the (always consistent) ancestors of leaf 0.
        node = jnp.where(write, slots, 0) + num_leaves

        def level_up(_, carry):
            node, *trees = carry
            node = node // 2
            get = lambda tree, nodes: tree.at[nodes].get(mode="promise_in_bounds")
            return (node,) + tuple(
                tree.at[node].set(
                    combine(get(tree, 2 * node), get(tree, 2 * node + 1)),
                    mode="promise_in_bounds",
                )
                for tree, combine in zip(trees, combines, strict=True)
            )

        trees = list(jax.lax.fori_loop(0, depth, level_up, (node, *trees))[1:])
    if k == 1:
        trees.append(min_tree)
    return (*trees, *extra_out)


def tree_descend(sum_tree: jax.Array, targets: jax.Array) -> jax.Array:
    """For each target in `[0, total)`, the leaf whose prefix-sum interval contains it.

    Schaul et al. 2016, Appendix B.2.1 (sum-tree retrieval): at each node go left if
    `target < left`, else subtract `left` and go right. `sum_tree` float32 `[2 L]` (heap layout,
    see `tree_set`), `targets` `[B]` float32 -> leaf indices `[B]` int32, one batched gather of
    both children per level. Guarded against float rounding: the walk never enters a child whose
    sum is 0, so (if the root is positive) it always ends on a leaf with positive mass, i.e. a
    stored slot, even when `target - left` rounds past the right child's sum or the target is
    >= total.
    """
    num_leaves = sum_tree.shape[0] // 2
    depth = num_leaves.bit_length() - 1
    children_of = sum_tree.reshape(num_leaves, 2)

    def level_down(_, carry):
        node, target = carry
        children = children_of.at[node].get(mode="promise_in_bounds")
        left, right = children[:, 0], children[:, 1]
        go_right = jnp.where(left > 0, (target >= left) & (right > 0), True)
        target = jnp.where(go_right, target - left, target)
        return 2 * node + go_right.astype(jnp.int32), target

    start = jnp.ones(targets.shape, jnp.int32)
    node, _ = jax.lax.fori_loop(0, depth, level_down, (start, targets))
    return node - num_leaves


def _last_occurrence(indices: jax.Array) -> jax.Array:
    """`[B]` bool: True where `indices[b]` does not appear again later in the batch."""
    order = jnp.argsort(indices, stable=True)
    sorted_indices = indices[order]
    is_last = jnp.concatenate([sorted_indices[1:] != sorted_indices[:-1], jnp.array([True])])
    return jnp.zeros(indices.shape, bool).at[order].set(is_last, unique_indices=True)


def _normalised_weights(ratio: jax.Array, beta: Any) -> jax.Array:
    """`(P(i) / min_j P(j))^-beta`, i.e. `(N P(i))^-beta / max_j (N P(j))^-beta` (Section 3.4).

    `ratio >= 1`, so the weight is <= 1; the clip only removes float rounding above 1.
    """
    return jnp.minimum(jnp.power(ratio, -jnp.asarray(beta, jnp.float32)), 1.0)


def _rank_tables(capacity: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """`(r^-alpha, cumsum)` for ranks r = 1..capacity, accumulated in float64, stored float32."""
    power = np.arange(1, capacity + 1, dtype=np.float64) ** -alpha
    return power.astype(np.float32), np.cumsum(power).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Public constructors.


def uniform_replay(capacity: int, batch_size: int) -> ReplayBuffer:
    """Uniform experience replay (the baseline of Schaul et al. 2016, Section 2 / Section 6).

    A ring buffer of `capacity` items; `sample(state, key, beta=None)` draws `batch_size` slots
    uniformly *with replacement* from the `N = size` stored items (`beta` is ignored), with
    weights 1 and probabilities `1/N`. `set_priorities` is a no-op, so agent code can use either
    buffer. The caller must `add` at least one item before sampling.

    Args:
      capacity: maximum number of stored items, >= 1.
      batch_size: number of items per sample `B`, >= 1.

    Returns:
      A `ReplayBuffer`.
    """
    capacity = _check_positive_int("capacity", capacity)
    batch_size = _check_positive_int("batch_size", batch_size)

    def init(item: PyTree) -> ReplayState:
        return ReplayState(
            storage=_init_storage(item, capacity),
            position=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
            # Distinct (empty) arrays: one buffer cannot be donated twice.
            priorities=jnp.zeros((0,), jnp.float32),
            sum_tree=jnp.zeros((0,), jnp.float32),
            min_tree=jnp.zeros((0,), jnp.float32),
            max_priority=jnp.ones((), jnp.float32),
        )

    def add(state: ReplayState, items: PyTree) -> ReplayState:
        _, storage, position, size = _ring_slots(state, items, capacity)
        return state.replace(storage=storage, position=position, size=size)

    def sample(state: ReplayState, key: chex.PRNGKey, beta: Any = None) -> ReplaySample:
        del beta
        n = jnp.maximum(state.size, 1)
        indices = jax.random.randint(key, (batch_size,), 0, n, dtype=jnp.int32)
        return ReplaySample(
            indices=indices,
            items=_gather(state.storage, indices),
            weights=jnp.ones((batch_size,), jnp.float32),
            probabilities=jnp.full((batch_size,), 1.0, jnp.float32) / n.astype(jnp.float32),
        )

    def set_priorities(
        state: ReplayState, indices: jax.Array, priorities: jax.Array
    ) -> ReplayState:
        del indices, priorities
        return state

    return ReplayBuffer(
        init=init,
        add=add,
        sample=sample,
        set_priorities=set_priorities,
        capacity=capacity,
        batch_size=batch_size,
    )


def prioritized_replay(
    capacity: int,
    batch_size: int,
    alpha: float = 0.6,
    kind: str = "proportional",
    eps: float = 1e-6,
    tree_impl: str = "auto",
    normalise_weights: str = "buffer",
) -> ReplayBuffer:
    """Prioritized experience replay (Schaul et al. 2016, Section 3.3, Algorithm 1).

    Stochastic prioritization `P(i) = p_i^alpha / sum_k p_k^alpha` (Eq. 1) over the `N` stored
    items, with

    * `kind="proportional"`: `p_i = |delta_i| + eps`. Sum tree over `L = 2^ceil(log2 C)` leaves
      plus a min tree (exact `min_j P(j)` for the weights), `state.sum_tree` and
      `state.min_tree`. `add` / `set_priorities` cost `O(B log C)` (no delta updates: ancestors
      are recomputed, so the root never drifts); `sample` is stratified (Appendix B.2.1:
      `[0, total)` split into `B` equal segments, one uniform draw per segment, draws clipped
      below `total`, guarded sum-tree descent), `O(B log C)`.
    * `kind="rank"`: `p_i = 1 / rank(i)`, rank 1 = largest `|delta|` among the stored items
      (ties broken by slot index, lower slot first). Sampling follows exactly this distribution:
      each `sample` sorts the stored priorities (`O(C log C)`), draws ranks by stratified inverse
      CDF of the precomputed power law `r^-alpha` (cumulated in float64, stored float32, so
      exact up to float32 rounding of that table, the same precision as the sum tree) and maps
      ranks back to slots. The paper instead re-sorts a heap only periodically and samples
      piecewise-uniformly in `B` equal-probability segments, which is cheaper but approximate;
      no cheaper exact path is offered. The sort dominates: for C = 100k it takes tens of ms
      per sample on a 2-core CPU (XLA's CPU sort), so prefer "proportional" for speed.
      `add` / `set_priorities` are `O(B)`.

    New items get `p_t = max_{i<t} p_i` (Algorithm 1 line 6; `p_1 = 1`, line 2); the running max
    is float32 and includes `eps` (after `set_priorities(.., [2.7])` new items get
    `float32(2.7) + float32(eps)`). `sample(state, key, beta)` returns importance weights
    `w_i = (N P(i))^-beta / max_j (N P(j))^-beta` (Section 3.4, Algorithm 1 line 10) with the max
    over the whole buffer, computed as `(P(i) / min_j P(j))^-beta` (`normalise_weights="buffer"`),
    or over the sampled batch (`"batch"`, as Dopamine and most implementations do; the
    proportional buffer then keeps no min tree, which makes `add` and `set_priorities` cheaper);
    `beta` in [0, 1] may be a traced scalar (annealed by the caller).

    `set_priorities(state, indices [B], priorities [B])` takes `|delta|` (Algorithm 1 line 12;
    `abs` is applied, then `eps` added). If an index repeats, the last occurrence wins. Indices
    outside the stored slots `[0, size)` are ignored. Priorities must be finite; with large
    `alpha` tiny priorities can underflow to `p^alpha = 0` (such items are never sampled).

    The caller must `add` at least one item before sampling (inside jit this cannot raise).

    Args:
      capacity: maximum number of stored items `C`, >= 1.
      batch_size: number of items per sample `B`, >= 1.
      alpha: priority exponent, >= 0 (0 gives uniform sampling; the paper uses 0.6 / 0.7).
      kind: "proportional" or "rank".
      eps: added to `|delta|` so no item has zero priority, > 0.
      tree_impl: how `add` / `set_priorities` update the trees (all exact, bit-identical
        results, see `tree_set`): "levels" (CPU with one XLA intra-op thread), "walk" (CPU with
        XLA's default multi-threaded pool), "batched" (GPU/TPU) or "auto" (levels on the CPU
        backend, batched elsewhere).

    Returns:
      A `ReplayBuffer`.
    """
    capacity = _check_positive_int("capacity", capacity)
    batch_size = _check_positive_int("batch_size", batch_size)
    alpha = _check_float("alpha", alpha, strictly_positive=False)
    eps = _check_float("eps", eps, strictly_positive=True)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if tree_impl not in TREE_IMPLS:
        raise ValueError(f"tree_impl must be one of {TREE_IMPLS}, got {tree_impl!r}")
    if normalise_weights not in NORMALISATIONS:
        raise ValueError(
            f"normalise_weights must be one of {NORMALISATIONS}, got {normalise_weights!r}"
        )
    over_batch = normalise_weights == "batch"
    proportional = kind == "proportional"
    num_leaves = _num_leaves(capacity)
    if not proportional:
        rank_power_np, rank_cumsum_np = _rank_tables(capacity, alpha)

    def init(item: PyTree) -> ReplayState:
        if proportional:
            sum_tree, min_tree = empty_trees(num_leaves)
            if over_batch:
                min_tree = jnp.zeros((0,), jnp.float32)
        else:
            sum_tree, min_tree = jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32)
        return ReplayState(
            storage=_init_storage(item, capacity),
            position=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
            priorities=jnp.zeros((capacity,), jnp.float32),
            sum_tree=sum_tree,
            min_tree=min_tree,
            max_priority=jnp.ones((), jnp.float32),
        )

    def ordered(batch: int) -> bool:
        """Whether writes are applied in order (duplicates allowed) for a batch of this size."""
        return _tree_path(num_leaves, batch, tree_impl) in ("levels", "walk")

    def write_priorities(state: ReplayState, slots, raw, write) -> ReplayState:
        """Stores raw priorities at `slots[write]` and updates both trees.

        Slots with `write=True` must be unique unless `ordered(B)`.
        """
        if not proportional:
            if ordered(slots.shape[0]):
                (priorities,) = _ordered_set([state.priorities], [0], slots, [raw], write)
            else:
                target = jnp.where(write, slots, capacity)  # out of range: dropped
                priorities = state.priorities.at[target].set(raw, mode="drop")
            return state.replace(priorities=priorities)
        leaves = jnp.power(raw, alpha).astype(jnp.float32)
        sum_tree, min_tree, priorities = tree_set(
            state.sum_tree,
            state.min_tree,
            slots,
            leaves,
            write,
            tree_impl,
            extra=((state.priorities, raw),),
        )
        return state.replace(priorities=priorities, sum_tree=sum_tree, min_tree=min_tree)

    def add(state: ReplayState, items: PyTree) -> ReplayState:
        slots, storage, position, size = _ring_slots(state, items, capacity)
        raw = jnp.full(slots.shape, state.max_priority, jnp.float32)
        write = jnp.ones(slots.shape, bool)
        state = state.replace(storage=storage, position=position, size=size)
        return write_priorities(state, slots, raw, write)

    def set_priorities(
        state: ReplayState, indices: jax.Array, priorities: jax.Array
    ) -> ReplayState:
        indices = jnp.asarray(indices)
        priorities = jnp.asarray(priorities)
        if indices.ndim != 1 or priorities.shape != indices.shape:
            raise ValueError(
                f"indices and priorities must both have shape [B], got {indices.shape} and "
                f"{priorities.shape}"
            )
        indices = indices.astype(jnp.int32)
        raw = jnp.abs(priorities).astype(jnp.float32) + jnp.float32(eps)
        in_range = (indices >= 0) & (indices < state.size)
        # Duplicates: the last occurrence wins (applied in order, or masked to unique writes).
        write = in_range if ordered(indices.shape[0]) else in_range & _last_occurrence(indices)
        safe_slots = jnp.where(write, indices, 0)
        state = write_priorities(state, safe_slots, raw, write)
        # Running max over every in-range value, as if the batch were applied sequentially.
        max_priority = jnp.maximum(state.max_priority, jnp.max(jnp.where(in_range, raw, 0.0)))
        return state.replace(max_priority=max_priority.astype(jnp.float32))

    def sample_proportional(state: ReplayState, key: chex.PRNGKey, beta: Any) -> ReplaySample:
        total = state.sum_tree[1]
        targets = _stratified_targets(key, batch_size, total)
        indices = jnp.clip(tree_descend(state.sum_tree, targets), 0, capacity - 1)
        leaves = state.sum_tree[num_leaves + indices]
        min_leaf = jnp.min(leaves) if over_batch else state.min_tree[1]
        return ReplaySample(
            indices=indices,
            items=_gather(state.storage, indices),
            weights=_normalised_weights(leaves / min_leaf, beta),
            probabilities=leaves / total,
        )

    def sample_rank(state: ReplayState, key: chex.PRNGKey, beta: Any) -> ReplaySample:
        rank_power = jnp.asarray(rank_power_np)
        rank_cumsum = jnp.asarray(rank_cumsum_np)
        n = jnp.maximum(state.size, 1)
        stored = jnp.arange(capacity) < state.size
        # Slots by descending priority; empty slots (+inf key) last; ties: lower slot first.
        order = jnp.argsort(jnp.where(stored, -state.priorities, jnp.inf), stable=True)
        total = rank_cumsum[n - 1]
        targets = _stratified_targets(key, batch_size, total)
        ranks = jnp.searchsorted(rank_cumsum, targets, side="right", method="scan")
        ranks = jnp.clip(ranks, 0, n - 1).astype(jnp.int32)  # 0-based: rank(i) = ranks + 1
        indices = order[ranks].astype(jnp.int32)
        power = rank_power[ranks]
        return ReplaySample(
            indices=indices,
            items=_gather(state.storage, indices),
            weights=_normalised_weights(
                power / (jnp.min(power) if over_batch else rank_power[n - 1]), beta
            ),
            probabilities=power / total,
        )

    def sample(state: ReplayState, key: chex.PRNGKey, beta: Any) -> ReplaySample:
        if proportional:
            return sample_proportional(state, key, beta)
        return sample_rank(state, key, beta)

    return ReplayBuffer(
        init=init,
        add=add,
        sample=sample,
        set_priorities=set_priorities,
        capacity=capacity,
        batch_size=batch_size,
    )
