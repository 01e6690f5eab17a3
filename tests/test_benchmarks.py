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
    ],
)
def test_a_bad_override_is_one_line_before_training(script, item, needle):
    out = _run(os.path.join(ROOT, "benchmarks", script), "--set", item)
    assert out.returncode == 2 and needle in out.stderr, out.stderr[-500:]
    assert "Traceback" not in out.stderr
