"""One log format for medvp and the libraries it drives (MONAI, ignite, Optuna, Python warnings).

The command line calls :func:`configure_logging` once, at its edge; library code only logs. Every record goes
through one handler on the root logger, with one format::

    21:10:38 INFO    medvp: data pneumoniamnist.npz: binary task, ...
    21:10:41 WARNING monai: ...

MONAI's ``get_logger`` gives some of its loggers their own stdout handler with another format and stops them
propagating, and Optuna does the same for its ``optuna`` logger; :func:`adopt_library_loggers` hands them back
to the root handler. The handler writes through ``tqdm.write``, so log lines never land inside a progress bar.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

from tqdm import tqdm

__all__ = ["LOG_FORMAT", "configure_logging", "adopt_library_loggers", "log_source"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(source)s: %(message)s"
DATE_FORMAT = "%H:%M:%S"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "quiet": logging.WARNING}

#: loggers whose handlers medvp replaces (their records go to the root handler)
LIBRARIES = ("monai", "ignite", "optuna", "medvp", "pipeline", "py.warnings")

#: library loggers kept quieter than the chosen level unless --debug, and why
_QUIETER = {
    # MONAI's LoadImage builds every reader, and its nvImageCodec DICOM reader warns on each construction that
    # the optional GPU decoder plugin is missing. medvp decodes DICOM with pydicom's own decoders, so the
    # plugin is never needed: the warning says nothing about the run.
    "monai.data.nvimgcodec_pydicom_plugin": logging.ERROR,
    # ignite logs an engine's exception (with its traceback) before re-raising it; medvp reports it once.
    "ignite.engine": logging.CRITICAL,
    # ignite's own INFO lines (engine run starting/finished, handler set-up) repeat what medvp's lines say. MONAI's
    # stay: medvp's training attaches none of MONAI's chatty handlers, and what the bundle verifier says is wanted.
    "ignite": logging.WARNING,
}


#: modules whose own UserWarning / FutureWarning / DeprecationWarning are silenced outside --debug
_LIBRARY_WARNING_MODULES = (r"(monai|ignite|torch|torchvision|optuna|pydicom|nibabel|SimpleITK|PIL|matplotlib|scipy|"
                            r"numpy)(\.|$)")


def log_source(name: str) -> str:
    """The short source shown in a log line: ``medvp`` for this package, else the top-level package name."""
    top = name.split(".")[0]
    if top in ("pipeline", "medvp", "__main__"):
        return "medvp"
    return "warnings" if name == "py.warnings" else top


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.source = log_source(record.name)
        return super().format(record)


class _TqdmHandler(logging.StreamHandler):
    """Write each record with ``tqdm.write``: above any open progress bar instead of into it.

    Without a ``stream`` it writes to whatever ``sys.stderr`` is when the record comes (a notebook or a test
    harness may swap it after logging was configured), never to a stream that has since been closed.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self.follows_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr if self.follows_stderr else self.stream)
        except Exception:  # noqa: BLE001 - logging must not raise (the standard handlers behave the same)
            self.handleError(record)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 (stdlib's)
    """A Python warning as one log line: ``WARNING warnings: RuntimeWarning: text (module.py:12)``."""
    logging.getLogger("py.warnings").warning("%s: %s (%s:%d)", category.__name__, message,
                                             os.path.basename(filename), lineno)


def adopt_library_loggers(debug: bool = False) -> None:
    """Route every MONAI, ignite and Optuna logger created so far to the root handler, and quieten their chatter.

    Call it again after importing a library that configures its loggers at import time (MONAI and Optuna do).
    """
    level = logging.getLogger().level
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or not name.startswith(LIBRARIES):
            continue
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    for name, level in _QUIETER.items():
        logging.getLogger(name).setLevel(logging.DEBUG if debug else level)
    optuna = sys.modules.get("optuna")
    if optuna is not None:  # its own handler is re-added by optuna.logging unless switched off there
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        optuna.logging.set_verbosity(level)  # its trial results are INFO lines


def configure_logging(level: str = "info", stream: TextIO | None = None, rank: int = 0) -> None:
    """Send all log records, medvp's and the libraries', to ``stream`` (stderr) in :data:`LOG_FORMAT`.

    Args:
        level: ``"debug"``, ``"info"`` or ``"quiet"`` (warnings and errors only).
        stream: where the lines go; standard error by default.
        rank: a distributed run's process rank: processes other than rank 0 log warnings and errors only.
    """
    if level not in LEVELS:
        raise ValueError(f"level = {level!r}: expected one of {', '.join(LEVELS)}")
    chosen = LEVELS[level]
    if rank != 0 and level != "debug":
        chosen = logging.WARNING
    handler = _TqdmHandler(stream)
    handler.setFormatter(_Formatter(LOG_FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen)
    warnings.showwarning = _show_warning  # warnings.warn(...) becomes a one-line WARNING record in the same format
    if level != "debug":
        # Deprecation notices and user warnings that the libraries raise about their own internals are not the user's
        # to act on; only those are silenced (matched on the module that raises them), so a warning from medvp or from
        # the user's own code still shows as a log line.
        for category in (UserWarning, FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=_LIBRARY_WARNING_MODULES)
    adopt_library_loggers(debug=level == "debug")
