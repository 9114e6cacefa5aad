"""pipeline/logs.py: library warnings about their internals are silenced outside --debug; others become log lines."""

import io
import warnings

import pytest

from pipeline.logs import configure_logging


@pytest.fixture
def log_stream(restore_logging):
    stream = io.StringIO()
    with warnings.catch_warnings():  # configure_logging's filters and showwarning are put back afterwards
        yield stream


def _warn_from(module: str, message: str) -> None:
    warnings.warn_explicit(message, UserWarning, filename=f"{module.replace('.', '/')}.py", lineno=1, module=module)


def test_a_library_warning_is_silenced_and_the_users_own_is_a_log_line(log_stream):
    configure_logging("info", stream=log_stream)
    _warn_from("monai.transforms.utils", "library internals")
    _warn_from("my_project.train", "the user's own warning")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1 and "WARNING warnings: UserWarning: the user's own warning (train.py:1)" in lines[0]


def test_debug_shows_library_warnings_too(log_stream):
    configure_logging("debug", stream=log_stream)
    _warn_from("monai.transforms.utils", "library internals")
    assert "UserWarning: library internals" in log_stream.getvalue()
