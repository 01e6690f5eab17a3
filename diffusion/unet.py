"""The DDPM noise-prediction U-Net (Ho et al. 2020, Sec. 4 and Appendix B), sized for a CPU.

A PixelCNN++-style U-Net: wide residual blocks with group normalisation and a projection of
the timestep embedding added inside each block, self-attention at the resolutions listed in
`attention_resolutions`, sinusoidal timestep embeddings (Vaswani et al. 2017, Sec. 3.5)
through a 2-layer MLP, skip connections from every down-path block to the up path.
Images are NHWC: `UNet(...)(x_BHWC, t_B) -> eps_hat_BHWC`. With `num_classes` = K > 0 the
net is class-conditional, `UNet(...)(x_BHWC, t_B, y_B)`: a learned embedding of the label
y in 0..K (K is the null label, "no class", which y_B=None means) is added to the timestep
embedding, as in Ho & Salimans 2022 (classifier-free guidance) and Dhariwal & Nichol 2021.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def timestep_embedding(t_B: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal embedding [B, dim]: sin(t w_i) then cos(t w_i), w_i = max_period^(-i/(dim/2))
    (Vaswani et al. 2017, Sec. 3.5, as used by Ho et al. 2020)."""
    if dim % 2:
        raise ValueError(f"dim: must be even, got {dim}")
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t_B.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], -1)


class ResBlock(nn.Module):
    """The residual block of Ho et al. 2020 (Appendix B, after PixelCNN++ / Wide ResNet):
    GroupNorm, swish, 3x3 conv, plus a projection of the timestep embedding, then GroupNorm,
    swish, dropout and a zero-initialised 3x3 conv, added to the (1x1-projected) input.
    x: [B, H, W, C_in], temb: [B, E] -> [B, H, W, channels]."""

    channels: int
    groups: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, temb, train: bool = False):
        h = nn.swish(nn.GroupNorm(num_groups=self.groups)(x))
        h = nn.Conv(self.channels, (3, 3))(h)
        h = h + nn.Dense(self.channels)(nn.swish(temb))[:, None, None, :]
        h = nn.swish(nn.GroupNorm(num_groups=self.groups)(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(self.channels, (3, 3), kernel_init=nn.initializers.zeros)(h)
        if x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1))(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions, with a residual connection."""

    groups: int

    @nn.compact
    def __call__(self, x):
        B, H, W, C = x.shape
        h = nn.GroupNorm(num_groups=self.groups)(x).reshape(B, H * W, C)
        q, k, v = jnp.split(nn.Dense(3 * C)(h), 3, axis=-1)
        w = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(C), axis=-1)
        out = jnp.einsum("bqk,bkc->bqc", w, v)
        out = nn.Dense(C, kernel_init=nn.initializers.zeros)(out)
        return x + out.reshape(B, H, W, C)


class UNet(nn.Module):
    """eps_theta(x_t, t) for images [B, H, W, C] (H and W divisible by 2^(levels-1)), or
    eps_theta(x_t, t, y) with int labels y [B] in 0..num_classes (num_classes: the null label).

    Defaults suit 28x28 MNIST on a CPU: base width 16, widths (16, 32, 32) at 28, 14 and 7
    pixels, attention at 7x7, one residual block per level (a forward and backward pass of
    a batch of 64 takes about 0.5 s on 2 cores; width 32 takes 2 s).
    """

    base_channels: int = 16
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (7,)
    groups: int = 8
    dropout: float = 0.0
    num_classes: int = 0  # 0: unconditional; K: labels 0..K-1 and the null label K

    @nn.compact
    def __call__(self, x_BHWC, t_B, y_B=None, train: bool = False):
        B, H, W, C = x_BHWC.shape
        if t_B.shape != (B,):
            raise ValueError(f"t_B: must be [B] = [{B}], got {t_B.shape}")
        if y_B is not None and (not self.num_classes or y_B.shape != (B,)):
            raise ValueError(
                f"y_B: labels need num_classes > 0 (got {self.num_classes}) and shape [B] = "
                f"[{B}], got {y_B.shape}"
            )
        levels = len(self.channel_mults)
        if H % 2 ** (levels - 1) or W % 2 ** (levels - 1):
            raise ValueError(
                f"x_BHWC: height and width must be divisible by {2 ** (levels - 1)} for "
                f"{levels} levels, got {H}x{W}"
            )
        temb_dim = 4 * self.base_channels
        temb = timestep_embedding(t_B, self.base_channels)
        temb = nn.Dense(temb_dim)(nn.swish(nn.Dense(temb_dim)(temb)))
        if self.num_classes:
            if y_B is None:
                y_B = jnp.full((B,), self.num_classes, jnp.int32)
            temb = temb + nn.Embed(self.num_classes + 1, temb_dim)(y_B)

        h = nn.Conv(self.base_channels, (3, 3))(x_BHWC)
        skips = [h]
        for level, mult in enumerate(self.channel_mults):
            for _ in range(self.num_res_blocks):
                h = ResBlock(self.base_channels * mult, self.groups, self.dropout)(h, temb, train)
                if h.shape[1] in self.attention_resolutions:
                    h = AttentionBlock(self.groups)(h)
                skips.append(h)
            if level < levels - 1:
                h = nn.Conv(h.shape[-1], (3, 3), strides=(2, 2))(h)
                skips.append(h)

        h = ResBlock(h.shape[-1], self.groups, self.dropout)(h, temb, train)
        h = AttentionBlock(self.groups)(h)
        h = ResBlock(h.shape[-1], self.groups, self.dropout)(h, temb, train)

        for level, mult in reversed(list(enumerate(self.channel_mults))):
            for _ in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], -1)
                h = ResBlock(self.base_channels * mult, self.groups, self.dropout)(h, temb, train)
                if h.shape[1] in self.attention_resolutions:
                    h = AttentionBlock(self.groups)(h)
            if level > 0:
                Bh, Hh, Wh, Ch = h.shape
                h = jax.image.resize(h, (Bh, 2 * Hh, 2 * Wh, Ch), "nearest")
                h = nn.Conv(Ch, (3, 3))(h)
        h = nn.swish(nn.GroupNorm(num_groups=self.groups)(h))
        return nn.Conv(C, (3, 3), kernel_init=nn.initializers.zeros)(h)
