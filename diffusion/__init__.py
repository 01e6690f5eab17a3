"""Generative models: DDPM primitives (`diffusion.ddpm`), the U-Net (`diffusion.unet`),
training and sampling run folders (`diffusion.train`), image sets (`diffusion.data`) and the
classifier-feature Frechet distance (`diffusion.metrics`). Latent diffusion and the disguise
attack come with a later part of the same issue."""
