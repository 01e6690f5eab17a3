"""Pack a pytree of arrays into one flat uint32 vector and back, bit for bit.

A jitted call pays a fixed cost for every array it takes or returns. On the 2-core machine of
`benchmarks/RESULTS.md` a call with 30 small arrays in and out cost about 270 us against 45 us
for one array, and two Python threads calling it gained 1.24x against 1.65x for one array with
the same compute. `Packer` lets a hot loop carry its whole state as one array: `pack` inside or
outside `jax.jit`, `unpack` inside the jitted function (XLA drops the parts it does not use).

Every dtype of at most 32 bits round-trips exactly: 32-bit dtypes are bit-cast, bool and 8- or
16-bit integers are widened to 32 bits, 16-bit floats to float32 (all exact). 64-bit dtypes are
refused (they appear only with `jax_enable_x64`).

This file is vendorable: it imports only jax and numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _to_u32(x: jax.Array) -> jax.Array:
    """[n] of any supported dtype -> [n] uint32, invertible by `_from_u32`."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    if x.dtype.itemsize < 4:
        wide = jnp.float32 if jnp.issubdtype(x.dtype, jnp.floating) else jnp.int32
        x = x.astype(wide)
    return jax.lax.bitcast_convert_type(x, jnp.uint32)


def _from_u32(x: jax.Array, dtype) -> jax.Array:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return x != 0
    if dtype.itemsize < 4:
        wide = jnp.float32 if jnp.issubdtype(dtype, jnp.floating) else jnp.int32
        return jax.lax.bitcast_convert_type(x, wide).astype(dtype)
    return jax.lax.bitcast_convert_type(x, dtype)


class Packer:
    """The layout of one pytree structure (treedef, shapes and dtypes of a template, whose
    leaves may be arrays or `jax.ShapeDtypeStruct`s, e.g. from `jax.eval_shape`).

    `pack(tree) -> [size] uint32` and `unpack([size] uint32) -> tree` are jitted (one compiled
    call outside a jit, inlined inside one); `pack` requires `tree` to have the template's
    structure, shapes and dtypes.
    """

    def __init__(self, template):
        leaves, self.treedef = jax.tree.flatten(template)
        self.shapes = [tuple(np.shape(x)) for x in leaves]
        self.dtypes = [np.dtype(getattr(x, "dtype", None) or jnp.asarray(x).dtype) for x in leaves]
        for dtype in self.dtypes:
            if dtype.itemsize > 4:
                raise ValueError(f"Packer: dtypes of at most 32 bits are supported, got {dtype}")
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = np.cumsum([0] + self.sizes).tolist()
        self.size = self.offsets[-1]
        self.pack = jax.jit(self._pack)
        self.unpack = jax.jit(self._unpack)

    def _pack(self, tree) -> jax.Array:
        leaves = self.treedef.flatten_up_to(tree)
        parts = []
        for x, shape, dtype in zip(leaves, self.shapes, self.dtypes, strict=True):
            x = jnp.asarray(x)
            if x.shape != shape or x.dtype != dtype:
                raise ValueError(
                    f"Packer.pack: a leaf of shape {x.shape} and dtype {x.dtype}, the layout "
                    f"wants {shape} {dtype}"
                )
            parts.append(_to_u32(x.reshape(-1)))
        return jnp.concatenate(parts) if parts else jnp.zeros((0,), jnp.uint32)

    def _unpack(self, vector: jax.Array):
        if vector.shape != (self.size,):
            raise ValueError(f"Packer.unpack: wants shape ({self.size},), got {vector.shape}")
        leaves = [
            _from_u32(vector[start : start + size], dtype).reshape(shape)
            for start, size, shape, dtype in zip(
                self.offsets, self.sizes, self.shapes, self.dtypes, strict=False
            )
        ]
        return jax.tree.unflatten(self.treedef, leaves)
