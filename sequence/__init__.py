"""Sequence models (the Transformer, PR-SSM). Filled in by later issues; nothing is exported yet."""
