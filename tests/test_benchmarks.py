"""The benchmark scripts import and parse their flags (CI runs no benchmark itself): each
`--help` exits 0 with a usage line, and a bad --set override stops before any training."""

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(glob.glob(os.path.join(ROOT, "benchmarks", "*.py")))


def _run(*argv):
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_benchmark_help_renders(script):
    out = _run(script, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage:"), out.stdout[:200]


@pytest.mark.parametrize(
    "script, item, needle",
    [
        ("prssm_sysid.py", "iterations=2.5", "iterations must be an integer"),
        ("prssm_sysid.py", "iterations=-1", "iterations: must be in [1, inf)"),
        ("ddpm_mnist.py", "learning_rate=-1", "learning_rate: must be in (0, inf)"),
        ("impala_policy_lag.py", "nope=1", "expected FIELD=VALUE"),
        ("prssm_sysid.py --select", "init_lengthscale=2,x", "init_lengthscale must be a number"),
        ("prssm_sysid.py --select", "init_lengthscale=2,-1", "init_lengthscale: must be in (0"),
        ("prssm_sysid.py --select", "init_lengthscale", "expected FIELD=V1,V2,..."),
        # fields the benchmark sets itself used to end in a duplicate-keyword TypeError
        ("prssm_sysid.py --select", "seed=0,1", "['seed'] already set"),
        ("prssm_sysid.py", "data=x.csv", "['data'] already set"),
        # no repeat used to end in a traceback (the max of no training times)
        ("prssm_sysid.py --seeds", "0", "--seeds: need at least 1 repeat, got 0"),
        # --select-rungs needs an ensemble with a ladder, and chooses the rungs itself
        ("prssm_sysid.py --ensemble", "8 --select-rungs", "needs --ensemble >= 2, --set"),
        (
            "prssm_sysid.py --select-rungs --ensemble 8 --set lengthscale_ladder=2 --select",
            "lengthscale_rungs=2,4",
            "chooses lengthscale_rungs itself; drop it from --select",
        ),
        ("impala_policy_lag.py", "architecture=threads", "['architecture'] already set"),
        ("impala_policy_lag.py", "learning_rate=-1", "learning_rate: must be in (0, inf)"),
        ("transformer_multi30k.py", "dropout=1", "dropout: must be in [0, 1)"),
        ("transformer_multi30k.py", "data_dir=no/such", "data_dir: 'no/such' is not a directory"),
        ("transformer_multi30k.py", "dim=30", "num_heads: must divide dim (30), got 4"),
        ("alphazero_board_games.py", "num_simulations=0", "num_simulations: must be in [1, inf)"),
        ("alphazero_board_games.py", "seed=3", "['seed'] already set"),
        ("alphazero_board_games.py --evaluate RUN --set", "learning_rate=0.1", "--evaluate"),
        ("dreamer_cartpole.py", "horizon=0", "horizon: must be in [1, inf)"),
        ("dreamer_cartpole.py", "seed=3", "['seed'] already set"),
    ],
)
def test_a_bad_override_is_one_line_before_training(script, item, needle):
    script, _, flag = script.partition(" ")
    out = _run(os.path.join(ROOT, "benchmarks", script), *(flag or "--set").split(), *item.split())
    assert out.returncode == 2 and needle in out.stderr, out.stderr[-500:]
    assert "Traceback" not in out.stderr


def test_rlax_zoo_bench_lists_and_runs_the_scripts(capfd, tmp_path):
    from rlax_zoo import cli

    assert cli.main(["bench"]) == 0
    listed = [line.split()[0] for line in capfd.readouterr().out.splitlines()]
    assert listed == [os.path.basename(s)[:-3] for s in SCRIPTS]
    # the script's exit status comes back, whichever spelling of its name
    assert cli.main(["bench", "maximization-bias", "--help"]) == 0
    assert capfd.readouterr().out.startswith("usage: maximization_bias.py")
    assert cli.main(["bench", "prssm_sysid.py", "--set", "iterations=-1"]) == 2
    assert "iterations: must be in [1, inf)" in capfd.readouterr().err
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'; one of ['a3c_vs_a2c'" in capfd.readouterr().err
    assert cli.main(["bench", "--benchmarks-dir", str(tmp_path)]) == 2
    assert f"no benchmark scripts in '{tmp_path}'" in capfd.readouterr().err
    (tmp_path / "broken.py").write_text("def f(:\n")  # listed, not a traceback
    assert cli.main(["bench", "--benchmarks-dir", str(tmp_path)]) == 0
    assert "broken  (does not parse: line 1" in capfd.readouterr().out


def test_rlax_zoo_bench_lets_the_script_finish_on_ctrl_c(tmp_path):
    """Ctrl-C reaches the whole foreground process group: the CLI must wait for the script
    to checkpoint and exit, not kill it (subprocess.call would after 0.25 s)."""
    import signal
    import time

    (tmp_path / "slow.py").write_text(
        '"""Waits; on Ctrl-C takes a second to save, then exits 3."""\n'
        "import pathlib, sys, time\n"
        "pathlib.Path(sys.argv[1], 'started').touch()\n"
        "try:\n    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(1.0)\n    pathlib.Path(sys.argv[1], 'saved').touch()\n    sys.exit(3)\n"
    )
    # the CLI gets Python's Ctrl-C handler even where this test inherits SIGINT ignored (a
    # background job of a non-interactive shell); the script's exec resets it to the default
    cli = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv[0] = 'rlax-zoo'; runpy.run_module('rlax_zoo.cli', run_name='__main__')"
    )
    argv = [sys.executable, "-c", cli, "bench", "--benchmarks-dir", str(tmp_path), "slow"]
    process = subprocess.Popen([*argv, str(tmp_path)], cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 3
    assert (tmp_path / "saved").exists()
