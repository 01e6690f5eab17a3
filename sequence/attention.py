"""Scaled dot-product and multi-head attention (Vaswani et al. 2017, Sec. 3.2) and the
sinusoidal positional encoding (Sec. 3.5).

Shape letters: B batch, T query positions, S key positions, H heads, K query/key size per
head, V value size per head, D model size. A mask is boolean, True where a query may attend
to a key, and broadcasts to [B, H, T, S]. A query that may attend to no key gets a zero
output (not NaN, not a uniform average).

Vendorable: this file imports only numpy, jax and flax.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _check_rank(name: str, x, rank: int, letters: str) -> None:
    if x.ndim != rank:
        raise ValueError(f"{name}: expected shape [{', '.join(letters)}], got {x.shape}")


def attention_weights(
    q_BTHK: jax.Array, k_BSHK: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """The attention weights softmax(Q K^T / sqrt(d_k)) of Vaswani et al. 2017, eq. (1).

    q: [B, T, H, K], k: [B, S, H, K], mask: bool broadcastable to [B, H, T, S] (True =
    attend). Returns [B, H, T, S] in float32; masked entries are 0, and a row with no
    allowed key is all 0.
    """
    _check_rank("q_BTHK", q_BTHK, 4, "BTHK")
    _check_rank("k_BSHK", k_BSHK, 4, "BSHK")
    if q_BTHK.shape[0] != k_BSHK.shape[0] or q_BTHK.shape[2:] != k_BSHK.shape[2:]:
        raise ValueError(
            f"q_BTHK {q_BTHK.shape} and k_BSHK {k_BSHK.shape}: batch, heads and key size must agree"
        )
    logits = jnp.einsum(
        "bthk,bshk->bhts", q_BTHK.astype(jnp.float32), k_BSHK.astype(jnp.float32)
    ) / math.sqrt(q_BTHK.shape[-1])
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    try:
        mask = jnp.broadcast_to(mask, logits.shape)
    except ValueError:
        raise ValueError(
            f"mask: shape {jnp.shape(mask)} does not broadcast to [B, H, T, S] = {logits.shape}"
        ) from None
    logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1) * mask


def scaled_dot_product_attention(
    q_BTHK: jax.Array, k_BSHK: jax.Array, v_BSHV: jax.Array, mask: jax.Array | None = None
) -> jax.Array:
    """Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V, Vaswani et al. 2017, eq. (1), per head.

    q: [B, T, H, K], k: [B, S, H, K], v: [B, S, H, V], mask: see `attention_weights`.
    Returns [B, T, H, V] in v's dtype.
    """
    _check_rank("v_BSHV", v_BSHV, 4, "BSHV")
    if v_BSHV.shape[:3] != k_BSHK.shape[:3]:
        raise ValueError(f"v_BSHV {v_BSHV.shape} and k_BSHK {k_BSHK.shape}: B, S, H must agree")
    w = attention_weights(q_BTHK, k_BSHK, mask)
    return jnp.einsum("bhts,bshv->bthv", w, v_BSHV.astype(jnp.float32)).astype(v_BSHV.dtype)


def causal_mask(length: int) -> jax.Array:
    """[1, 1, T, T]: query t may attend to keys s <= t (the decoder's masking, Sec. 3.2.3)."""
    return jnp.tril(jnp.ones((length, length), bool))[None, None]


def padding_mask(valid_BS: jax.Array) -> jax.Array:
    """[B, 1, 1, S]: every query may attend to the keys that are real tokens (not padding)."""
    _check_rank("valid_BS", valid_BS, 2, "BS")
    return valid_BS.astype(bool)[:, None, None, :]


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """The positional encoding of Vaswani et al. 2017, Sec. 3.5: [length, dim] float32 with
    PE(pos, 2i) = sin(pos / 10000^(2i/dim)) and PE(pos, 2i+1) = cos(pos / 10000^(2i/dim))."""
    if dim % 2 or dim < 2:
        raise ValueError(f"dim: must be even and >= 2, got {dim}")
    pos = np.arange(length, dtype=np.float64)[:, None]
    angle = pos / 10_000.0 ** (np.arange(0, dim, 2, dtype=np.float64) / dim)[None]
    pe = np.empty((length, dim), np.float64)
    pe[:, 0::2], pe[:, 1::2] = np.sin(angle), np.cos(angle)
    return pe.astype(np.float32)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O with head_i =
    Attention(Q W_i^Q, K W_i^K, V W_i^V), Vaswani et al. 2017, Sec. 3.2.2 (d_k = d_v = dim / h).

    `__call__(x_q_BTD, x_kv_BSD, mask) -> [B, T, dim]`. For incremental decoding the two halves
    are separate methods: `key_value(x_kv_BSD) -> (k_BSHK, v_BSHK)` and
    `attend(x_q_BTD, k_BSHK, v_BSHK, mask) -> [B, T, dim]`.
    """

    num_heads: int
    dim: int

    def setup(self):
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads: must divide dim ({self.dim}), got {self.num_heads}")
        head = (self.num_heads, self.dim // self.num_heads)
        self.query = nn.DenseGeneral(head, name="query")
        self.key = nn.DenseGeneral(head, name="key")
        self.value = nn.DenseGeneral(head, name="value")
        self.out = nn.DenseGeneral(self.dim, axis=(-2, -1), name="out")

    def key_value(self, x_kv_BSD: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.key(x_kv_BSD), self.value(x_kv_BSD)

    def attend(
        self, x_q_BTD: jax.Array, k_BSHK: jax.Array, v_BSHK: jax.Array, mask=None
    ) -> jax.Array:
        return self.out(scaled_dot_product_attention(self.query(x_q_BTD), k_BSHK, v_BSHK, mask))

    def __call__(self, x_q_BTD: jax.Array, x_kv_BSD: jax.Array, mask=None) -> jax.Array:
        return self.attend(x_q_BTD, *self.key_value(x_kv_BSD), mask)
