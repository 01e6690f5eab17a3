"""Sequence models: sparse GP primitives (`sequence.gp`), PR-SSM (`sequence.prssm`, run
folders in `sequence.runs`) and system-identification data with an ARX baseline
(`sequence.sysid`); attention (`sequence.attention`), the Transformer (`sequence.transformer`,
run folders in `sequence.translate`) and parallel text with BLEU (`sequence.data`)."""
