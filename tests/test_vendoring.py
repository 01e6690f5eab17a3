"""Each primitive file works alone: copied into an empty folder, it imports and runs."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRIMITIVES = [
    "rlax_zoo/value_learning.py",
    "rlax_zoo/multistep.py",
    "rlax_zoo/policy_gradient.py",
    "rlax_zoo/replay.py",
    "rlax_zoo/networks.py",
    "rlax_zoo/shaping.py",
    "rlax_zoo/vtrace.py",
    "rlax_zoo/mcts.py",
    "rlax_zoo/world_model.py",
    "rlax_zoo/xla_cpu.py",
    "sequence/gp.py",
    "sequence/attention.py",
    "sequence/data.py",
    "diffusion/ddpm.py",
    "diffusion/unet.py",
    "diffusion/autoencoder.py",
    "diffusion/disguise.py",
]


@pytest.mark.parametrize("path", PRIMITIVES)
def test_primitive_file_imports_alone(tmp_path, path):
    shutil.copy(os.path.join(ROOT, path), tmp_path)
    module = os.path.splitext(os.path.basename(path))[0]
    code = (
        f"import sys; sys.path = [p for p in sys.path if 'rlax' not in p.lower()]; "
        f"import {module}; assert 'rlax_zoo' not in sys.modules; print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
