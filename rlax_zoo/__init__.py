"""rlax-zoo: reinforcement-learning primitives, agents and benchmarks in JAX."""

__version__ = "0.1.0"
