"""Write a copy of an image .npz (keys x [N, H, W(, C)] uint8, y [N]) with every image
upsampled by an integer factor (bilinear, `jax.image.resize`), for the disguise experiment on
bigger digits: `diffusion.symbol` stamps its 7x7 symbol at a fixed place whatever the image
size, so on 56x56 digits the symbol is a quarter of the area it is on 28x28 ones, and a PSNR
floor allows twice the L2 change.

    python benchmarks/upsample_images.py --factor 2 --out /tmp/mnist_5k_56.npz
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from diffusion.latent import AutoencoderConfig  # noqa: E402


def upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """x [N, H, W(, C)] uint8 -> [N, factor H, factor W(, C)] uint8, bilinear."""
    if factor < 1:
        raise ValueError(f"factor: must be an integer >= 1, got {factor}")
    shape = (x.shape[0], x.shape[1] * factor, x.shape[2] * factor) + x.shape[3:]
    y = jax.image.resize(np.asarray(x, np.float32), shape, "linear")
    return np.clip(np.round(np.asarray(y)), 0, 255).astype(np.uint8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=AutoencoderConfig().data)
    p.add_argument("--factor", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    with np.load(args.data) as d:
        x, y = d["x"], d["y"]
    big = upsample(x, args.factor)
    np.savez_compressed(args.out, x=big, y=y)
    print(f"{args.data}: {x.shape} -> {args.out}: {big.shape}")


if __name__ == "__main__":
    main()
