"""The "copyrighted" symbol of the disguise experiment (Lu et al. 2024, Sec. 6, the symbol
case, at MNIST scale) and its detector.

The symbol is a 7x7 hollow square with a centre dot stamped bright into the top-left corner
of a 28x28 digit, where no MNIST digit has ink. `add_symbol` stamps it; `symbol_score` is the
mean brightness of the symbol's pixels minus that of the other pixels of its 7x7 patch
(images in [-1, 1]: about 2 for a clean stamp, about 0 for a blank corner), and
`symbol_correlation` the Pearson correlation of the patch with the symbol's shape, and
`frame_sides` the brightness of each of the square's four sides over the patch's interior
(`detector_margin`, a differentiable soft minimum of the three tests' margins, is what an
ascent that must pass them all can climb).
`has_symbol` asks for all three: enough contrast, the shape (a bright blob or stroke in the
corner, which generated samples can have, has contrast but not the shape), and all four
sides (two sides of the square pass the first two tests: session 36 found an ascent on the
score that made revelations, and a latent model that drew, just the top and bottom sides).
`tests/test_disguise.py` and `benchmarks/disguise_mnist.py` validate the detector on
held-out digits with and without the stamp, before and after the autoencoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

SYMBOL = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 0, 0, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1],
    ],
    bool,
)
ORIGIN = (1, 1)  # top-left pixel of the 7x7 patch
# Validated by benchmarks/disguise_mnist.py: clean digits score at most about 0.3, stamps
# decoded by the autoencoder at least about 0.5 (a clean stamp scores 2).
THRESHOLD = 0.45
MIN_CORRELATION = 0.5
# Each side of the square at least this much brighter than the patch's interior (a clean
# stamp: 2; the decoded stamps that the other two tests flag, of 1000 test digits: 0.42 at
# the least with the default autoencoder, 0.38 with 2 latent channels; clean digits, raw or
# decoded: 0.02 at most; session 36).
MIN_SIDE = 0.3


def _patch(images: np.ndarray) -> np.ndarray:
    x = images if isinstance(images, jax.Array) else np.asarray(images)
    if x.ndim != 4 or x.shape[1] < ORIGIN[0] + 7 or x.shape[2] < ORIGIN[1] + 7:
        raise ValueError(f"images: must be [N, H, W, C] with H, W >= 8, got shape {x.shape}")
    r, c = ORIGIN
    return x[:, r : r + 7, c : c + 7, :].mean(-1)


def add_symbol(images: np.ndarray, value: float = 1.0) -> np.ndarray:
    """A copy of images [N, H, W, C] (in [-1, 1]) with the symbol's pixels set to `value`."""
    _patch(images)
    out = np.array(images, np.float32, copy=True)
    r, c = ORIGIN
    out[:, r : r + 7, c : c + 7, :][:, SYMBOL, :] = value
    return out


def symbol_score(images: np.ndarray) -> np.ndarray:
    """[N]: mean of the symbol's pixels minus mean of the rest of its 7x7 patch. A jax array
    in gives a jax array out, differentiable (`benchmarks/disguise_mnist.py --reach` ascends
    it)."""
    return _contrast(_patch(images))


def _contrast(p):
    return (p * SYMBOL).sum((-2, -1)) / SYMBOL.sum() - (p * ~SYMBOL).sum((-2, -1)) / (~SYMBOL).sum()


def symbol_correlation(images: np.ndarray) -> np.ndarray:
    """[N]: Pearson correlation of the 7x7 patch with the symbol's 0/1 shape (0 for a flat
    patch)."""
    return _correlation(np.asarray(_patch(images), np.float64))


def _correlation(p):
    """Pearson correlation of patches p [N, 7, 7] (numpy or jax) with SYMBOL; the epsilon
    makes a flat patch 0 and keeps its gradient finite."""
    xp = jnp if isinstance(p, jax.Array) else np
    q = p.reshape(len(p), 49)
    q = q - q.mean(-1, keepdims=True)
    t = SYMBOL.reshape(49) - SYMBOL.mean()
    return q @ t / (xp.sqrt((q**2).sum(-1) + 1e-12) * np.linalg.norm(t))


def _sides(p):
    """[N, 4]: the mean of the 5 pixels between the corners of the top, bottom, left and
    right sides of the square, for patches p [N, 7, 7] (numpy or jax)."""
    xp = jnp if isinstance(p, jax.Array) else np
    return xp.stack([p[:, 0, 1:6], p[:, 6, 1:6], p[:, 1:6, 0], p[:, 1:6, 6]], 1).mean(-1)


def frame_sides(images: np.ndarray) -> np.ndarray:
    """[N, 4]: the mean of the top, bottom, left and right sides of the symbol's square (the
    5 pixels of each between the corners, which two sides share) minus the median of the
    patch's 5x5 interior, for images [N, H, W, C] in [-1, 1] (a clean stamp: 2 each)."""
    p = np.asarray(_patch(images), np.float64)
    interior = np.median(p[:, 1:6, 1:6].reshape(len(p), -1), axis=1)
    return _sides(p) - interior[:, None]


def detector_margin(
    images,
    temperature: float = 0.05,
    threshold: float = THRESHOLD,
    min_correlation: float = MIN_CORRELATION,
    min_side: float = MIN_SIDE,
) -> jax.Array:
    """[N], differentiable: a soft minimum of `has_symbol`'s six margins, for images
    [N, H, W, C] in [-1, 1]: symbol_score - threshold, symbol_correlation - min_correlation,
    and each of the square's four sides - min_side. A side here is the mean of its 5 pixels
    between the corners minus the mean of the patch's 5x5 interior without the centre dot (a
    mean, where `frame_sides` takes the median, so that it has a gradient). The soft minimum
    is the margins' average weighted by softmax(-margin / temperature): it tends to the
    smallest margin as temperature -> 0, so it is positive about where the detector flags
    (a clean stamp: the correlation's 0.5; the top and bottom sides alone: -0.3).
    `benchmarks/disguise_mnist.py --reach-score margin` ascends it, so that an ascent must pass
    every test, where session 36's ascent on `symbol_score` passed with part of the frame."""
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature}")
    p = jnp.asarray(_patch(images), jnp.float32)
    inner = p[:, 1:6, 1:6].reshape(len(p), 25)
    interior = (inner.sum(-1) - inner[:, 12]) / 24  # without the centre dot
    margins = jnp.concatenate(
        [
            (_contrast(p) - threshold)[:, None],
            (_correlation(p) - min_correlation)[:, None],
            _sides(p) - interior[:, None] - min_side,
        ],
        1,
    )
    return (jax.nn.softmax(-margins / temperature, axis=-1) * margins).sum(-1)


def has_symbol(
    images: np.ndarray,
    threshold: float = THRESHOLD,
    min_correlation: float = MIN_CORRELATION,
    min_side: float | None = MIN_SIDE,
) -> np.ndarray:
    """[N] bool: symbol_score >= threshold, symbol_correlation >= min_correlation and every
    one of frame_sides >= min_side (None: no side test, the detector before session 36)."""
    found = (symbol_score(images) >= threshold) & (symbol_correlation(images) >= min_correlation)
    if min_side is not None:
        found &= frame_sides(images).min(-1) >= min_side
    return found
