"""Generative models (DDPM, latent diffusion, disguise attack). Filled in by later issues; nothing is exported yet."""
