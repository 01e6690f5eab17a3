"""Checkpoints: round trip, a corrupt newest checkpoint falls back, a missing one is clear."""

import os
import re
import time
import types

import jax.numpy as jnp
import numpy as np
import pytest

from rlax_zoo import runner
from rlax_zoo.checkpointing import Checkpointer, CheckpointError


def _tree(x):
    return {"w": np.full((3,), x, np.float32), "step": np.int32(x)}


def test_round_trip_and_corrupt_fallback(tmp_path):
    ck = Checkpointer(str(tmp_path / "run" / "checkpoints"))
    ck.save(1, _tree(1.0), {"chunk": 1})
    ck.save(2, _tree(2.0), {"chunk": 2})
    other = tmp_path / "other_run.txt"
    other.write_text("keep me")
    state, meta, step = ck.restore(lambda meta: _tree(0.0))
    assert step == 2 and meta["chunk"] == 2
    np.testing.assert_array_equal(state["w"], [2.0, 2.0, 2.0])
    # corrupt the newest: every file in its folder truncated to garbage
    for root, _, files in os.walk(os.path.join(ck.directory, "2")):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"\x00garbage")
    with pytest.warns(UserWarning, match="skipped unreadable checkpoint"):
        state, meta, step = ck.restore(lambda meta: _tree(0.0))
    assert step == 1 and float(state["w"][0]) == 1.0
    assert other.read_text() == "keep me"


def test_missing_checkpoint_is_clear(tmp_path):
    ck = Checkpointer(str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        ck.restore(lambda meta: _tree(0.0))


def test_structure_mismatch_is_clear(tmp_path):
    ck = Checkpointer(str(tmp_path / "c"))
    ck.save(1, _tree(1.0), {"chunk": 1})
    with pytest.raises(CheckpointError, match="unreadable or does not match"):
        ck.restore(lambda meta: {"w": np.zeros((5, 5), np.float32)})


def test_zero_size_arrays_round_trip(tmp_path):
    """orbax cannot write zero-size arrays (a replay buffer without a min tree holds one):
    they come back with their shape and dtype."""
    ck = Checkpointer(str(tmp_path / "checkpoints"))
    tree = {
        "w": np.arange(3, dtype=np.float32),
        "empty": np.zeros((0,), np.float32),
        "empty2": np.zeros((0, 2), np.int32),
    }
    ck.save(1, tree, {})
    state, _, _ = ck.restore(lambda meta: tree)
    np.testing.assert_array_equal(state["w"], tree["w"])
    assert state["empty"].shape == (0,) and state["empty"].dtype == np.float32
    assert state["empty2"].shape == (0, 2) and state["empty2"].dtype == np.int32


def test_drive_chunks_time_budget_stops_checkpointed_and_resumes(tmp_path, monkeypatch):
    """Chunks of 0.1 s on a fake clock and a 0.25 s budget: after chunk 2 the next would pass
    the budget (0.2 + 0.1 > 0.25), so the loop ends there with a checkpoint; a resume runs the
    rest."""
    clock = iter(np.arange(0.0, 100.0, 0.1))  # each perf_counter call: +0.1 s
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))

    def train_fn(n):
        return lambda state: (state + n, {"loss": np.ones(n)})

    def after_chunk(state, chunk, metrics, dt, total):
        assert dt == pytest.approx(0.1)  # t0 and the end: one tick apart
        return [dict(chunk=chunk, step=int(state))]

    kw = dict(after_chunk=after_chunk, max_chunks=None, checkpoint_every=10)
    loop = runner.drive_chunks(
        str(tmp_path), jnp.int32(0), [3] * 5, train_fn, resume=False, time_budget=0.25, **kw
    )
    assert (loop.out_of_time, loop.interrupted, loop.ran_chunks, int(loop.state)) == (
        True,
        False,
        2,
        6,
    )
    assert loop.train_seconds == pytest.approx(0.2)
    rest = runner.drive_chunks(str(tmp_path), jnp.int32(0), [3] * 5, train_fn, resume=True, **kw)
    assert (rest.out_of_time, rest.ran_chunks, int(rest.state)) == (False, 3, 15)
    assert [int(r["step"]) for r in rest.rows] == [3, 6, 9, 12, 15]


def test_a_damaged_log_is_named_on_resume(tmp_path):
    """read_csv, which a resume uses to keep the logs of the chunks already run: a row whose
    counter columns are not numbers names the file and line (no KeyError traceback)."""
    read_csv = runner.read_csv
    path = tmp_path / "metrics.csv"
    path.write_text("chunk,loss\n0,0.5\n1,0.25\n")
    assert [r["loss"] for r in read_csv(str(path), ("chunk",))] == ["0.5", "0.25"]
    assert read_csv(str(tmp_path / "none.csv"), ("chunk",)) == []
    path.write_text("chunk,loss\n0,0.5\nx\x00,1\n")
    with pytest.raises(
        CheckpointError, match=r"metrics.csv line 3 has no number in column 'chunk'"
    ):
        read_csv(str(path), ("chunk",))
    path.write_text("garbage\n1\n")
    with pytest.raises(CheckpointError, match="line 2 has no number in column 'chunk'"):
        read_csv(str(path), ("chunk",))


def test_default_run_dir_names():
    """runs/<method>[-<label>]-seed<seed>-<date>-<time>-<microseconds>: the label is the
    config's env_id unless given, "" drops it, "/" cannot make a subfolder, and two runs
    started in the same second get different folders."""
    import dataclasses

    @dataclasses.dataclass
    class Env:
        env_id: str = "ALE/Pong-v5"
        seed: int = 3

    @dataclasses.dataclass
    class NoEnv:
        seed: int = 0

    pattern = r"runs/{}-seed{}-\d{{8}}-\d{{6}}-\d{{6}}"
    assert re.fullmatch(pattern.format("dqn-ALE_Pong-v5", 3), runner.default_run_dir("dqn", Env()))
    named = runner.default_run_dir("alphazero", Env(), label="connect_four")
    assert re.fullmatch(pattern.format("alphazero-connect_four", 3), named)
    assert re.fullmatch(
        pattern.format("ddpm", 0), runner.default_run_dir("ddpm", NoEnv(), label="")
    )
    assert re.fullmatch(pattern.format("x-run", 0), runner.default_run_dir("x", NoEnv()))
    names = set()
    for _ in range(3):
        names.add(runner.default_run_dir("ddpm", NoEnv(), label=""))
        time.sleep(0.001)
    assert len(names) == 3
