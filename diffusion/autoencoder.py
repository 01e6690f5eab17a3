"""The image autoencoder of a latent diffusion model (Rombach et al. 2022, Sec. 3), sized for a
CPU: a convolutional encoder E that maps an image x [H, W, C] to a latent z = E(x) of
[H / 2^k, W / 2^k, latent_channels] and a decoder D with D(E(x)) ~ x.

The latent diffusion model of `diffusion.latent` trains DDPM on z / scale (the latents'
standard deviation, as Rombach et al. do with their "scale factor"); the disguise attack of
`diffusion.disguise` (Lu et al. 2024) optimises images against E.

Rombach et al. regularise the latent with a small KL term (a VAE) or vector quantisation;
here the encoder is deterministic and `latent_penalty` (an L2 term on z, weight 1e-4 by
default) plays the role of their KL weight (1e-6 against a perceptual loss): it keeps the
latents at a bounded scale without blurring the reconstructions.

This file is vendorable: it imports only jax and flax.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class ResidualBlock(nn.Module):
    """x + conv3x3(swish(GN(conv3x3(swish(GN(x)))))): the residual block of Rombach et al.'s
    autoencoder (as in Ho et al.'s U-Net, without a timestep). [B, H, W, C] -> same shape."""

    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        h = nn.Conv(c, (3, 3))(nn.swish(nn.GroupNorm(num_groups=self.groups)(x)))
        h = nn.swish(nn.GroupNorm(num_groups=self.groups)(h))
        return x + nn.Conv(c, (3, 3), kernel_init=nn.initializers.zeros)(h)


class SelfAttention(nn.Module):
    """x + single-head self-attention over the H*W positions of GN(x) (the mid-block attention
    of Rombach et al.'s autoencoder). [B, H, W, C] -> same shape."""

    groups: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        B, H, W, C = x.shape
        h = nn.GroupNorm(num_groups=self.groups)(x).reshape(B, H * W, C)
        q, k, v = jnp.split(nn.Dense(3 * C)(h), 3, axis=-1)
        weights = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", q, k) / jnp.sqrt(C), axis=-1)
        out = nn.Dense(C, kernel_init=nn.initializers.zeros)(jnp.einsum("bqk,bkc->bqc", weights, v))
        return x + out.reshape(B, H, W, C)


def check_norm_groups(widths: tuple[int, ...], res_blocks: int, attention: bool, groups: int = 8):
    """Raise ValueError unless group norm (used by `res_blocks` and `attention`) can split
    every width into `groups` groups."""
    if (res_blocks or attention) and any(w % groups for w in widths):
        raise ValueError(f"widths: each must divide by the {groups} norm groups, got {widths}")


class Encoder(nn.Module):
    """E: images [B, H, W, C] -> latents [B, H / 2^k, W / 2^k, latent_channels], k = len(widths).

    A 3x3 convolution, then one stride-2 4x4 convolution per entry of `widths` (each halves
    the sides) followed by `res_blocks` residual blocks, self-attention at the lowest
    resolution if `attention` (these two make it Rombach et al.'s design in miniature), a 3x3
    convolution and a 1x1 projection to the latent channels; swish between.
    """

    widths: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    res_blocks: int = 0
    attention: bool = False
    groups: int = 8

    @nn.compact
    def __call__(self, x_BHWC: jax.Array) -> jax.Array:
        if x_BHWC.ndim != 4:
            raise ValueError(f"x_BHWC: must be [B, H, W, C], got shape {x_BHWC.shape}")
        check_norm_groups(self.widths, self.res_blocks, self.attention, self.groups)
        h = nn.swish(nn.Conv(self.widths[0], (3, 3))(x_BHWC))
        for width in self.widths:
            h = nn.swish(nn.Conv(width, (4, 4), strides=(2, 2))(h))
            for _ in range(self.res_blocks):
                h = ResidualBlock(self.groups)(h)
        if self.attention:
            h = SelfAttention(self.groups)(h)
        h = nn.swish(nn.Conv(self.widths[-1], (3, 3))(h))
        return nn.Conv(self.latent_channels, (1, 1))(h)


class Decoder(nn.Module):
    """D: latents [B, h, w, latent_channels] -> images [B, h 2^k, w 2^k, out_channels].

    The mirror of `Encoder`: a 3x3 convolution (then self-attention if `attention`), then per
    width (in reverse) a nearest-neighbour 2x upsampling, a 3x3 convolution and `res_blocks`
    residual blocks, and a 3x3 convolution to the image channels (linear output; images live
    in [-1, 1]).
    """

    widths: tuple[int, ...] = (32, 64)
    out_channels: int = 1
    res_blocks: int = 0
    attention: bool = False
    groups: int = 8

    @nn.compact
    def __call__(self, z_BhwL: jax.Array) -> jax.Array:
        if z_BhwL.ndim != 4:
            raise ValueError(f"z_BhwL: must be [B, h, w, L], got shape {z_BhwL.shape}")
        check_norm_groups(self.widths, self.res_blocks, self.attention, self.groups)
        h = nn.swish(nn.Conv(self.widths[-1], (3, 3))(z_BhwL))
        if self.attention:
            h = SelfAttention(self.groups)(h)
        for width in reversed(self.widths):
            B, H, W, C = h.shape
            h = jax.image.resize(h, (B, 2 * H, 2 * W, C), "nearest")
            h = nn.swish(nn.Conv(width, (3, 3))(h))
            for _ in range(self.res_blocks):
                h = ResidualBlock(self.groups)(h)
        return nn.Conv(self.out_channels, (3, 3))(h)


class Autoencoder(nn.Module):
    """E and D together: `apply(params, x)` reconstructs, `method=encode` / `decode` split them.

    Shapes: x [B, H, W, C] with H and W divisible by 2^len(widths); z [B, H / 2^k, W / 2^k,
    latent_channels]. `res_blocks` and `attention` as in `Encoder` (0 and False: the plain
    convolutional autoencoder).
    """

    widths: tuple[int, ...] = (32, 64)
    latent_channels: int = 4
    out_channels: int = 1
    res_blocks: int = 0
    attention: bool = False

    def setup(self):
        arch = dict(res_blocks=self.res_blocks, attention=self.attention)
        self.encoder = Encoder(self.widths, self.latent_channels, **arch)
        self.decoder = Decoder(self.widths, self.out_channels, **arch)

    def encode(self, x_BHWC: jax.Array) -> jax.Array:
        """E(x): images [B, H, W, C] in [-1, 1] -> latents [B, H / 2^k, W / 2^k, L]
        (Rombach et al. 2022, Sec. 3: z = E(x))."""
        return self.encoder(x_BHWC)

    def decode(self, z_BhwL: jax.Array) -> jax.Array:
        """D(z): latents [B, h, w, L] -> images [B, h 2^k, w 2^k, C] (x-tilde = D(E(x)))."""
        return self.decoder(z_BhwL)

    def __call__(self, x_BHWC: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(reconstruction D(E(x)) [B, H, W, C], latent E(x))."""
        z = self.encode(x_BHWC)
        return self.decode(z), z


def autoencoder_loss(
    model: Autoencoder,
    params,
    x_BHWC: jax.Array,
    latent_penalty: float = 1e-4,
    latent_noise: float = 0.0,
    key: jax.Array | None = None,
) -> tuple[jax.Array, dict]:
    """Mean squared reconstruction error ||D(z) - x||^2 (per pixel) plus
    latent_penalty * mean z^2, z = E(x) (Rombach et al. 2022, Sec. 3, with an L2 term in place
    of their small KL weight). x_BHWC [B, H, W, C].

    With latent_noise > 0 the decoder sees z + latent_noise * std(z) * eps, eps ~ N(0, I) drawn
    with `key` and std(z) the batch's latent standard deviation (so growing the latents cannot
    outrun the noise; no gradient flows through std(z)): a fixed-variance stand-in for the
    VAE's sampled posterior, which teaches the decoder to decode a ball around each latent
    alike.
    Returns (loss, {"reconstruction": mse, "latent_rms": sqrt(mean z^2)})."""
    if latent_noise < 0:
        raise ValueError(f"latent_noise: must be >= 0, got {latent_noise}")
    z = model.apply({"params": params}, x_BHWC, method=Autoencoder.encode)
    z_in = z
    if latent_noise > 0:
        if key is None:
            raise ValueError("key: needed when latent_noise > 0, got None")
        sigma = latent_noise * jax.lax.stop_gradient(jnp.std(z))
        z_in = z + sigma * jax.random.normal(key, z.shape, z.dtype)
    recon = model.apply({"params": params}, z_in, method=Autoencoder.decode)
    mse = jnp.mean((recon - x_BHWC) ** 2)
    z2 = jnp.mean(z**2)
    return mse + latent_penalty * z2, {"reconstruction": mse, "latent_rms": jnp.sqrt(z2)}
