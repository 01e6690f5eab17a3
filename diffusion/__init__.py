"""Generative models (DDPM, latent diffusion, the disguise attack).

Filled in by later issues; nothing is exported yet.
"""
