"""Orbax checkpoints of a run's state pytree plus a small JSON of metadata.

Every checkpoint is a numbered step folder inside `<run_dir>/checkpoints`; only that run's
folder is ever written or deleted. A missing checkpoint raises `CheckpointError` with the
path; a corrupt newest checkpoint is reported by name and the next older one is used.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import numpy as np


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, or does not fit the run's state."""


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _size(x) -> int:
    return int(np.prod(np.shape(x)))


class Checkpointer:
    """Save/restore (state pytree, metadata dict) under `directory` (made absolute)."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        ocp = _ocp()
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """The steps of the checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Write checkpoint `step` and wait until it is on disk (overwrites a same step)."""
        ocp = _ocp()
        if step in self._manager.all_steps():
            self._manager.delete(step)
        # orbax cannot write zero-size arrays (a replay buffer without a min tree has one): they
        # are saved as a one-element placeholder and rebuilt from the target on restore.
        state = jax.tree.map(
            lambda x: np.asarray(x) if _size(x) else np.zeros((1,), np.asarray(x).dtype), state
        )
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )
        self._manager.wait_until_finished()

    def restore_meta(self, step: int) -> dict:
        """The JSON metadata saved with checkpoint `step` (not its arrays)."""
        ocp = _ocp()
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def restore(self, target_fn) -> tuple[Any, dict, int]:
        """Restore the newest readable checkpoint.

        Args:
          target_fn: meta dict -> a pytree with the state's structure, shapes and dtypes
            (arrays or jax.ShapeDtypeStruct), so the restored tree keeps its types.
        Returns:
          (state, meta, step).
        """
        ocp = _ocp()
        steps = self.steps()
        if not steps:
            raise CheckpointError(
                f"no checkpoint found in {self.directory}: nothing to resume (was the run "
                "started, and did it reach its first checkpoint?)"
            )
        errors = []
        for step in reversed(steps):
            try:
                meta = self.restore_meta(step)
                target = jax.tree.map(
                    lambda x: (
                        jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
                        if not isinstance(x, jax.ShapeDtypeStruct)
                        else x
                    ),
                    target_fn(meta),
                )
                saved = jax.tree.map(
                    lambda t: t if _size(t) else jax.ShapeDtypeStruct((1,), t.dtype), target
                )
                out = self._manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(saved), meta=ocp.args.JsonRestore()
                    ),
                )
                state = jax.tree.map(
                    lambda t, x: x if _size(t) else np.zeros(t.shape, t.dtype), target, out["state"]
                )
                if errors:
                    warnings.warn(
                        f"skipped unreadable checkpoint(s) {errors}; resumed from step {step}",
                        stacklevel=2,
                    )
                return state, dict(out["meta"]), step
            except Exception as e:  # noqa: BLE001 - any reader failure means corrupt
                errors.append(f"{os.path.join(self.directory, str(step))}: {type(e).__name__}")
        raise CheckpointError(
            "every checkpoint in "
            f"{self.directory} is unreadable or does not match this run's state: {errors}"
        )


def restore_run_state(run_dir: str, template: Any) -> tuple[Any, dict]:
    """A run folder's newest readable checkpoint (`<run_dir>/checkpoints`): (its state, shaped
    and typed like `template`, as JAX arrays; its metadata). What loads a finished run's model
    for evaluation or sampling; raises CheckpointError as `Checkpointer.restore` does."""
    restored, meta, _ = Checkpointer(os.path.join(run_dir, "checkpoints")).restore(
        lambda meta: {"state": template}
    )
    return jax.tree.map(jax.numpy.asarray, restored["state"]), meta
