"""Image sets for the diffusion models: any array of images, or an .npz with `x` (images)
and `y` (labels), scaled to [-1, 1] in NHWC float32.

The shipped sets (`../shared/data/images/SOURCES.md`): MNIST-5k (5000 digits of 28x28,
500 per class, sorted by label) and the 8x8 UCI digits. `class_split` makes the split used
by every benchmark here: the first `train_per_class` images of each class train, the rest
test (MNIST-5k: 400 / 100 per class, 4000 / 1000 images).
"""

from __future__ import annotations

import os

import numpy as np


class ImageDataError(ValueError):
    """Images that cannot be used: the message names the argument and what is wrong."""


def to_model_range(images: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """[N, H, W] or [N, H, W, C] images of 0..max_value -> float32 NHWC in [-1, 1]
    (Ho et al. 2020, Sec. 3.3: data scaled linearly to [-1, 1]).

    max_value defaults to 255 for uint8 images and to the array's maximum otherwise.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[0] == 0:
        raise ImageDataError(
            f"images: must be [N, H, W] or [N, H, W, C] with N >= 1, got shape {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ImageDataError("images: contain NaN or inf values")
    lo, hi = float(x.min()), float(x.max())
    if max_value is None:
        max_value = 255.0 if x.dtype == np.uint8 else hi
    if lo < 0 or (max_value > 0 and hi > max_value):
        raise ImageDataError(
            f"images: values must lie in 0..max_value = {max_value}, got {lo}..{hi} (images "
            "already in [-1, 1] need no conversion)"
        )
    if not max_value > 0:
        raise ImageDataError(
            f"max_value: must be positive, got {max_value} (images whose largest value is 0 "
            "need it given)"
        )
    return (x.astype(np.float32) / max_value * 2.0 - 1.0).astype(np.float32)


def to_uint8(x_model: np.ndarray) -> np.ndarray:
    """[-1, 1] images back to uint8 0..255 (clipped)."""
    return np.clip(np.round((np.asarray(x_model) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def load_npz_images(path: str, max_value: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images NHWC float32 in [-1, 1], labels int) from an .npz with keys x and y."""
    if not os.path.exists(path):
        raise ImageDataError(f"data: {path!r} does not exist")
    try:
        archive = np.load(path)
        if not isinstance(archive, np.lib.npyio.NpzFile):  # a lone .npy array
            raise ValueError(f"it holds one array of shape {archive.shape}")
        with archive as f:
            x, y = f["x"], f["y"]
    except (KeyError, ValueError, OSError) as e:
        raise ImageDataError(f"data: {path!r} is not an .npz with arrays x and y ({e})") from None
    if len(x) != len(y):
        raise ImageDataError(f"data: {path!r} has {len(x)} images but {len(y)} labels")
    if max_value is None and "digits_8x8" in os.path.basename(path):
        max_value = 16.0
    return to_model_range(x, max_value), np.asarray(y, np.int64)


def class_split(
    x: np.ndarray, y: np.ndarray, train_per_class: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First `train_per_class` images of every class to train, the rest to test, in the
    file's order. Returns (x_train, y_train, x_test, y_test)."""
    train_idx, test_idx = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) <= train_per_class:
            raise ImageDataError(
                f"train_per_class: class {c} has only {len(idx)} images, need more than "
                f"{train_per_class} to leave a test part"
            )
        train_idx.append(idx[:train_per_class])
        test_idx.append(idx[train_per_class:])
    tr, te = np.concatenate(train_idx), np.concatenate(test_idx)
    return x[tr], y[tr], x[te], y[te]
