"""Sequence models: sparse GP primitives (`sequence.gp`), PR-SSM (`sequence.prssm`, run
folders in `sequence.runs`) and system-identification data with an ARX baseline
(`sequence.sysid`). The Transformer comes with a later issue."""
