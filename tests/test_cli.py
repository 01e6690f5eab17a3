"""The command line: every config field is a flag; bad input exits 2 with a clear message."""

import dataclasses

import pytest

from rlax_zoo import cli
from rlax_zoo.agents.dqn import DQNConfig


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "dqn", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for f in dataclasses.fields(DQNConfig):
        assert "--" + f.name.replace("_", "-") in text
    assert "--env" in text and "--resume" in text


@pytest.mark.parametrize("method", sorted(cli.METHODS))
def test_every_methods_help_renders(capsys, method):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", method, "--help"])
    assert e.value.code == 0
    assert "--time-budget-s" in capsys.readouterr().out


def test_a_percent_sign_in_an_options_help_is_printed_as_is():
    """argparse formats help texts with %, so an unescaped "5%" would break `--help`."""
    import argparse

    from rlax_zoo.config import add_arguments, option

    @dataclasses.dataclass
    class Config:
        rate: float = option(0.05, "Five % of the steps.", low=0.0)

    parser = argparse.ArgumentParser()
    add_arguments(parser, Config)
    assert "Five % of the steps." in " ".join(parser.format_help().split())


def test_flags_reach_the_config():
    args = cli.build_parser().parse_args(
        [
            "train",
            "dqn",
            "--env",
            "Acrobot-v1",
            "--no-dueling",
            "--hidden-sizes",
            "32,16",
            "--learning-rate",
            "0.01",
        ]
    )
    from rlax_zoo.config import from_args

    cfg = from_args(DQNConfig, args)
    assert cfg.env_id == "Acrobot-v1" and cfg.dueling is False
    assert cfg.hidden_sizes == (32, 16) and cfg.learning_rate == 0.01
    assert cfg.double_q is True  # untouched fields keep defaults


def test_from_args_validates_what_it_builds():
    from rlax_zoo.config import ConfigError, from_args

    args = cli.build_parser().parse_args(["train", "dqn", "--learning-rate", "-0.5"])
    with pytest.raises(ConfigError, match="learning_rate"):
        from_args(DQNConfig, args)


@pytest.mark.parametrize(
    "method,argv,needle",
    [
        ("dqn", ["--learning-rate", "-0.1"], "learning_rate: must be in (0, inf)"),
        ("dqn", ["--env", "Pongg-v5"], "Pong-v5"),
        ("dqn", ["--discount", "2"], "discount: must be in [0, 1]"),
        ("impala", ["--process-id", "3"], "process_id must be in 0 .. num_processes - 1 = 0"),
        ("impala", ["--num-processes", "2"], "coordinator_address (host:port of process 0)"),
        ("impala", ["--learner-devices", "0"], "learner_devices must be >= 1 or -1"),
        ("transformer", ["--dropout", "1"], "dropout: must be in [0, 1)"),
        ("transformer", ["--data-dir", "no/such/dir"], "data_dir"),
        ("transformer", ["--dim", "30"], "num_heads: must divide dim (30), got 4"),
        ("alphazero", ["--eval-games", "3"], "eval_games: must be even"),
        ("alphazero", ["--replay-capacity", "100"], "replay_capacity: must hold one"),
        ("dreamer", ["--replay-capacity", "100"], "replay_capacity: must hold prefill"),
        ("dreamer", ["--prefill", "8"], "prefill: must be at least sequence_length"),
    ],
)
def test_bad_input_exits_2_before_compiling(capsys, tmp_path, method, argv, needle):
    code = cli.main(["train", method, "--run-dir", str(tmp_path / "r"), *argv])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written, nothing compiled


def test_resume_missing_run_is_clear(capsys, tmp_path):
    code = cli.main(["train", "dqn", "--resume", str(tmp_path / "nope")])
    assert code == 2
    assert "not a run folder" in capsys.readouterr().err


def test_ctrl_c_checkpoints_and_resume_finishes(tmp_path):
    """A real SIGINT to `rlax-zoo train dqn`: it checkpoints, exits 0, and --resume finishes."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    small = [
        "--total-steps",
        "6000",
        "--num-envs",
        "4",
        "--buffer-size",
        "1000",
        "--batch-size",
        "32",
        "--learning-starts",
        "200",
        "--iterations-per-chunk",
        "25",
        "--hidden-sizes",
        "16",
        "--checkpoint-every",
        "1000",
        "--no-progress",
    ]
    cmd = [sys.executable, "-m", "rlax_zoo.cli", "train", "dqn", "--run-dir", str(run_dir)]
    proc = subprocess.Popen(
        cmd + small, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    metrics = run_dir / "metrics.csv"
    deadline = time.time() + 240
    while not metrics.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, out
    status = json.loads((run_dir / "status.json").read_text())
    assert status["interrupted"], out
    assert os.listdir(run_dir / "checkpoints")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlax_zoo.cli",
            "train",
            "dqn",
            "--resume",
            str(run_dir),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert not status["interrupted"] and status["env_steps"] >= 6000
    assert (run_dir / "learning_curve.png").exists()


def test_resume_takes_a_time_budget_and_refuses_other_flags(capsys, tmp_path):
    """--resume with --time-budget-s writes the budget into the run's config.json; any other
    config flag is refused by name (it would otherwise be silently ignored)."""
    import json

    from rlax_zoo import config as config_lib

    run = tmp_path / "run"
    run.mkdir()
    saved = config_lib.to_json(DQNConfig(learning_rate=0.002))
    (run / "config.json").write_text(saved)
    code = cli.main(["train", "dqn", "--resume", str(run), "--learning-rate", "0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--learning-rate cannot change a resumed run" in err and "--time-budget-s" in err
    assert (run / "config.json").read_text() == saved  # untouched
    code = cli.main(["train", "dqn", "--resume", str(run), "--time-budget-s", "-1"])
    assert code == 2 and "time_budget_s" in capsys.readouterr().err
    assert (run / "config.json").read_text() == saved  # a bad budget is not written

    args = cli.build_parser().parse_args(
        ["train", "dqn", "--resume", str(run), "--time-budget-s", "90"]
    )
    cli.apply_resume_flags(DQNConfig, args)
    written = json.loads((run / "config.json").read_text())
    assert written["time_budget_s"] == 90.0 and written["learning_rate"] == 0.002
    assert config_lib.from_json(DQNConfig, (run / "config.json").read_text()) == DQNConfig(
        learning_rate=0.002, time_budget_s=90.0
    )
    # a damaged config.json: an error that names the file, from the CLI (not a traceback)
    for damaged, wanted in [
        ("{lost", "not valid JSON"),
        ("[1]", "must hold a JSON object"),
        ('{"sample_steps": 50}', "fields unknown to DQNConfig ['sample_steps']"),
    ]:
        (run / "config.json").write_text(damaged)
        code = cli.main(["train", "dqn", "--resume", str(run)])
        assert code == 2
        err = capsys.readouterr().err
        assert f"{run / 'config.json'}: {wanted}" in err, err
    # hand-edited fields of the wrong type: refused by name before anything compiles
    for edited, wanted in [
        ('{"hidden_sizes": ["a", 1]}', "hidden_sizes: must be a tuple of integers"),
        ('{"hidden_sizes": [64, true]}', "hidden_sizes: must be a tuple of integers"),
        ('{"env_id": 5}', "env_id: must be text, got 5"),
    ]:
        (run / "config.json").write_text(edited)
        assert cli.main(["train", "dqn", "--resume", str(run)]) == 2
        assert wanted in capsys.readouterr().err
