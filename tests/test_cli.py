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


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--learning-rate", "-0.1"], "learning_rate: must be in (0, inf)"),
        (["--env", "Pongg-v5"], "Pong-v5"),
        (["--discount", "2"], "discount: must be in [0, 1]"),
    ],
)
def test_bad_input_exits_2_before_compiling(capsys, tmp_path, argv, needle):
    code = cli.main(["train", "dqn", "--run-dir", str(tmp_path / "r"), *argv])
    assert code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written, nothing compiled


def test_resume_missing_run_is_clear(capsys, tmp_path):
    code = cli.main(["train", "dqn", "--resume", str(tmp_path / "nope")])
    assert code == 2
    assert "not a run folder" in capsys.readouterr().err
