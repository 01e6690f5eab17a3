"""Tests for rlax_zoo/xla_cpu.py: sizing XLA's CPU intra-op pool before the backend starts."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from rlax_zoo import cli, xla_cpu

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = textwrap.dedent(
    """
    import json, os, sys
    threads = json.loads(sys.argv[1])
    from rlax_zoo import xla_cpu
    before = os.sched_getaffinity(0)
    if threads is not None:
        xla_cpu.configure_cpu_threads(threads)
    import jax.numpy as jnp
    total = float(jnp.arange(10.0).sum())
    tasks = os.listdir("/proc/self/task")
    names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks]
    masks = {sorted(os.sched_getaffinity(int(t))) == sorted(before) for t in tasks}
    try:
        xla_cpu.configure_cpu_threads(1 if threads != 1 else 2)
        late = "no error"
    except (RuntimeError, ValueError) as e:
        late = str(e)
    print(json.dumps({"total": total, "pool": sum("Eigen" in n for n in names),
                      "all_masks_restored": masks == {True}, "late": late,
                      "configured": xla_cpu.configured_threads()}))
    """
)


def _probe(threads):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(threads)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_one_thread_pool_and_affinity_restored():
    one = _probe(1)
    assert one["total"] == 45.0
    assert one["pool"] == 1
    assert one["configured"] == 1
    assert one["all_masks_restored"]  # every thread may run on every CPU again
    assert "before the first JAX computation" in one["late"] or xla_cpu.available_cpus() < 2
    default = _probe(None)
    assert default["configured"] is None
    assert default["pool"] == xla_cpu.available_cpus()
    assert "before the first JAX computation" in default["late"]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2", None, 10_000])
def test_bad_thread_counts_are_refused(bad):
    with pytest.raises(ValueError, match="threads must be an integer from 1 to"):
        xla_cpu.configure_cpu_threads(bad)


def test_cli_resolves_auto_and_refuses_bad_values(capsys):
    parser = cli.build_parser()
    every = xla_cpu.available_cpus()

    def threads(*argv):
        args = parser.parse_args(["train", *argv])
        return cli.cpu_threads_for(args.method, args)

    assert threads("dqn") == 1
    assert threads("dqn", "--env", "Pong-v5") == every
    assert threads("impala", "--env", "Breakout-v5") == every
    assert threads("prssm") == 1
    assert threads("ddpm") == every
    assert threads("a3c") == every  # actor threads must not share one XLA thread
    assert threads("async-q") == every
    assert threads("impala") == every
    assert threads("a2c") == 1
    assert threads("a3c", "--xla-cpu-threads", "1") == 1
    assert cli.main(["train", "dqn", "--xla-cpu-threads", "0"]) == 2
    assert "--xla-cpu-threads: threads must be an integer from 1 to" in capsys.readouterr().err
    assert cli.main(["train", "dqn", "--xla-cpu-threads", "many"]) == 2
    assert "--xla-cpu-threads must be auto or an integer" in capsys.readouterr().err
