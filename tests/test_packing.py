"""rlax_zoo.packing: a pytree packed into one uint32 vector comes back bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo.packing import Packer


def _tree(rng):
    bits = rng.integers(0, 2**32, size=(3, 2), dtype=np.uint32)
    special = np.array([np.nan, -0.0, np.inf, -np.inf, 1e-45, 3.4e38], np.float32)
    return {
        "f32": jnp.asarray(np.concatenate([special, rng.normal(size=4).astype(np.float32)])),
        "f16": jnp.asarray(rng.normal(size=(2, 3)).astype(np.float16)),
        "bf16": jnp.asarray(rng.normal(size=5), jnp.bfloat16),
        "i32": jnp.asarray(rng.integers(-(2**31), 2**31 - 1, size=4, dtype=np.int32)),
        "u32": jnp.asarray(bits),  # e.g. a PRNG key: every bit matters
        "i8": jnp.asarray(np.array([-128, -1, 0, 127], np.int8)),
        "u8": jnp.asarray(np.array([0, 1, 255], np.uint8)),
        "i16": jnp.asarray(np.array([-32768, 32767], np.int16)),
        "bool": jnp.asarray(np.array([True, False, True])),
        "scalar": jnp.float32(2.5),
        "nested": (jnp.zeros((0,), jnp.float32), [jnp.arange(3, dtype=jnp.int32)]),
    }


def _bits(x):
    x = np.asarray(x)
    return x.view(f"u{x.dtype.itemsize}") if x.dtype != np.bool_ else x


def test_round_trip_is_bit_exact_eager_and_jitted():
    tree = _tree(np.random.default_rng(0))
    packer = Packer(tree)
    assert packer.size == sum(int(np.size(x)) for x in jax.tree.leaves(tree))
    for pack, unpack in (
        (packer.pack, packer.unpack),
        (jax.jit(packer.pack), jax.jit(packer.unpack)),
    ):
        vector = pack(tree)
        assert vector.shape == (packer.size,) and vector.dtype == jnp.uint32
        back = unpack(vector)
        assert jax.tree.structure(back) == jax.tree.structure(tree)
        for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(back), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(_bits(a), _bits(b))


def test_layout_is_concatenation_in_leaf_order():
    """float32 leaves are bit-cast in place: the vector is the leaves' bits, in order."""
    tree = (jnp.array([1.0, -2.0], jnp.float32), jnp.array([[7]], jnp.int32))
    vector = np.asarray(Packer(tree).pack(tree))
    expected = np.concatenate([np.array([1.0, -2.0], np.float32).view(np.uint32), [7]])
    np.testing.assert_array_equal(vector, expected)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at most 32 bits"):
        Packer(np.zeros(3, np.float64))
    packer = Packer(jnp.zeros((2, 3), jnp.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\) float32"):
        packer.pack(jnp.zeros((3, 2), jnp.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\) float32"):
        packer.pack(jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"wants shape \(6,\)"):
        packer.unpack(jnp.zeros((5,), jnp.uint32))
