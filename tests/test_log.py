"""What the library says while it works: one log line per epoch, no bar redraws off a terminal,
and the ``retdm`` command's -v/-q."""

import dataclasses
import io
import logging
import re

import pytest
from click.testing import CliRunner

from retdm.cli import main
from retdm.log import bar, configure


@pytest.fixture(autouse=True)
def restore_logger():
    yield
    logger = logging.getLogger("retdm")
    logger.handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def test_training_off_a_terminal_logs_one_line_per_epoch_and_draws_no_bar(tmp_path, tiny_table, tiny_cfg, capsys):
    from retdm.train.run import train_method

    cfg = dataclasses.replace(tiny_cfg, pretrain=dataclasses.replace(tiny_cfg.pretrain, epochs=2))
    configure(0)
    train_method(tiny_table, tmp_path / "run", cfg, "bce", progress=True)
    out, err = capsys.readouterr()
    epochs = re.findall(r"^\S+ epoch (\d+): .*train_loss=", err, re.M)
    assert epochs == ["1", "2"], err
    assert "\r" not in err and "it/s" not in err and out == ""  # a bar redraw, a bar's rate; results go elsewhere

    configure(-1)
    train_method(tiny_table, tmp_path / "quiet", cfg, "bce", progress=True)
    assert "epoch" not in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_draw_only_on_a_terminal_and_never_under_quiet(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the suite's conftest turns every bar off
    configure(0)
    assert not bar(range(3), file=Terminal()).disable
    assert bar(range(3), file=io.StringIO()).disable is True  # a log file or a pipe: tqdm's own check
    assert bar(range(3), show=False, file=Terminal()).disable is True
    configure(-1)
    assert bar(range(3), file=Terminal()).disable is True


@pytest.mark.parametrize("flags, level", [([], logging.INFO), (["-v"], logging.DEBUG), (["-q"], logging.WARNING),
                                          (["-qq"], logging.ERROR), (["-v", "-q"], logging.INFO)])
def test_verbose_and_quiet_set_the_level(flags, level):
    result = CliRunner().invoke(main, [*flags, "methods"])
    assert result.exit_code == 0, result.output
    assert logging.getLogger("retdm").level == level
