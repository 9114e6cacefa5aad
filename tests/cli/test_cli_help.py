"""What the command line says about itself: global flags anywhere, help for every option, examples, --version;
and the one log format (pipeline.logs)."""

import argparse
import io
import logging
import re
import warnings
from importlib.metadata import version

import pytest

from pipeline.cli import build_parser, main
from pipeline.logs import configure_logging

LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +(medvp|monai|ignite|optuna|warnings): ")


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("argv", [["--quiet", "train", "c.yaml"], ["train", "c.yaml", "--quiet"],
                                  ["train", "--quiet", "c.yaml", "--set", "a.b=1"]])
def test_quiet_is_accepted_before_or_after_the_verb(argv):
    args = build_parser().parse_args(argv)
    assert args.quiet is True and args.debug is False and str(args.config) == "c.yaml"


def test_debug_after_the_verb_and_defaults_without_flags():
    assert build_parser().parse_args(["evaluate", "runs/x", "--debug"]).debug is True
    args = build_parser().parse_args(["evaluate", "runs/x"])
    assert (args.debug, args.quiet) == (False, False)


def test_every_option_has_help_and_every_verb_an_example():
    verbs = _verbs(build_parser())
    assert set(verbs) >= {"train", "evaluate", "validate", "preview", "tune", "predict", "report", "export-bundle"}
    for name, parser in verbs.items():
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}: no help text"
        text = parser.format_help()
        assert f"medvp {name} " in text.split("example")[-1], f"{name}: no example in --help"
    predict_help = " ".join(verbs["predict"].format_help().split())
    assert "--batch-size BATCH_SIZE items per inference batch (default: 64)" in predict_help
    assert "(default: None)" not in predict_help and "(default: [])" not in predict_help


def test_version_comes_from_the_installed_metadata(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"medvp {version('medvp')} (MONAI {version('monai')}")


def test_medvp_monai_ignite_and_warnings_share_one_format(restore_logging):
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    from monai.apps.utils import get_logger

    from pipeline.logs import adopt_library_loggers

    get_logger("monai.test_ux_logger")  # MONAI's own helper: a stdout handler with its own format
    adopt_library_loggers()
    logging.getLogger("pipeline.engine.train").info("epoch line")
    logging.getLogger("monai.test_ux_logger").warning("from monai")
    logging.getLogger("ignite.handlers.checkpoint").warning("from ignite")
    logging.getLogger("ignite.engine.engine.SupervisedTrainer").info("Engine run starting: ignite's chatter is off")
    logging.getLogger("monai.test_ux_logger").info("monai's INFO passes")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a runtime warning", RuntimeWarning, stacklevel=1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and all(LOG_LINE.match(line) for line in lines), lines
    assert [line.split(": ", 1)[0][9:].split() for line in lines] == [
        ["INFO", "medvp"], ["WARNING", "monai"], ["WARNING", "ignite"], ["INFO", "monai"], ["WARNING", "warnings"]]
