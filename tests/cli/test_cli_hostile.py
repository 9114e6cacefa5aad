"""Argument mistakes, disk-full edges and the clean exit: one line, exit status 2, nothing left running."""

import errno
import threading
import time
from multiprocessing.dummy import DummyProcess
from multiprocessing.pool import ThreadPool

import pytest

import pipeline.cli as cli
from pipeline.cli import main
from pipeline.errors import DataError


def _one_error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medvp: error: "), lines
    return lines[0].removeprefix("medvp: error: ")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize(("argv", "expected"), [
    (["preview", "CONFIG", "--count", "0"], "--count = 0: expected a positive number"),
    (["preview", "CONFIG", "--count", "-3"], "--count = -3: expected a positive number"),
    (["preview", "CONFIG", "--out", "FILE/preview.png"], "--out FILE/preview.png: FILE is a file, not a folder"),
    (["predict", "RUN", "x.png", "--out", "FILE/deeper/p.csv"],
     "--out FILE/deeper/p.csv: FILE is a file, not a folder"),
    (["make-demo-dicom", "FILE"], "make-demo-dicom OUT FILE: an existing file; expected a folder"),
    (["make-demo-dicom", "DIR", "--per-class", "-1"], "--per-class = -1: expected a positive number"),
    (["tune", "CONFIG", "--trials", "0"], "--trials = 0: expected a positive number"),
    (["tune", "CONFIG", "--worker", "-1"], "--worker -1: expected 0 or a positive number"),
])
def test_argument_mistakes_are_one_line_before_any_work(tmp_path, a_file, argv, expected, capsys, restore_logging):
    names = {"FILE": str(a_file), "DIR": str(tmp_path / "new"), "CONFIG": str(tmp_path / "missing.yaml"),
             "RUN": str(tmp_path)}
    argv = [next((arg.replace(key, value) for key, value in names.items() if key in arg), arg) for arg in argv]
    assert main(argv) == 2
    assert _one_error_line(capsys) == next((expected.replace(key, value) for key, value in names.items()
                                            if key in expected.split(":")[0] or key in expected), expected) \
        .replace("FILE", str(a_file))


def test_an_error_waits_for_the_caching_threads_before_exit(monkeypatch, capsys, restore_logging):
    """CacheDataset fills its cache on a ThreadPool; an item that fails reaches the CLI while the pool's daemon
    threads still work. Exiting then aborts the interpreter (SIGABRT) when a thread is inside torch's C++ code."""
    started = threading.Event()

    def load(index):
        if index == 0:
            started.wait(5)
            raise DataError("item 0: unreadable")
        started.set()
        time.sleep(0.5)  # an item being read while the error unwinds
        return index

    def failing_verb(args):
        with ThreadPool(2) as pool:  # as MONAI's CacheDataset._fill_cache does
            return list(pool.imap(load, range(4)))

    monkeypatch.setattr(cli, "_validate", failing_verb)
    assert main(["validate", "config.yaml"]) == 2
    assert _one_error_line(capsys) == "item 0: unreadable"
    assert not [thread for thread in threading.enumerate() if isinstance(thread, DummyProcess) and thread.is_alive()]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_at_the_run_lock_and_at_the_metrics_is_one_line_naming_the_file(tmp_path, monkeypatch):
    from pipeline.engine.checkpoint import write_run_file
    from pipeline.engine.rundir import RunDir, run_lock
    from pipeline.errors import StorageError

    real_open = open

    class FullDisk:  # the lock file opens (it is empty), the flush of its first write finds the disk full
        def __init__(self, handle):
            self.handle = handle

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def flush(self):
            _disk_full()

    def lock_on_full_disk(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        return FullDisk(handle) if str(path) == str(RunDir(tmp_path).lock_file) else handle

    monkeypatch.setattr("builtins.open", lock_on_full_disk)
    with pytest.raises(StorageError, match=f"^{RunDir(tmp_path).lock_file}: cannot write the run lock \\(disk full\\)"):
        with run_lock(tmp_path):
            pass
    monkeypatch.undo()
    target = tmp_path / "metrics_test.json"
    target.write_text("previous")
    monkeypatch.setattr("os.fsync", _disk_full)
    with pytest.raises(StorageError, match=f"^{target}: cannot write \\(disk full\\); the checkpoints are kept"):
        write_run_file(target, "{}")
    assert target.read_text() == "previous" and not list(tmp_path.glob(".*.tmp"))


def test_disk_full_while_drawing_a_figure_is_one_line_naming_the_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from pipeline.errors import StorageError
    from pipeline.evaluation.plots import new_figure, save_figure

    monkeypatch.setattr(Figure, "savefig", _disk_full)
    with pytest.raises(StorageError, match=f"^{tmp_path / 'roc_test.png'}: cannot write the figure \\(disk full\\)$"):
        save_figure(new_figure(2, 2), tmp_path / "roc_test.png")


def test_a_write_without_its_own_handling_still_ends_in_one_line_naming_the_file(monkeypatch, capsys):
    """The class, not the examples: a full disk or a read-only folder anywhere is one line, exit 2."""
    def verb(args):
        try:
            raise OSError(errno.EROFS, "Read-only file system", "/data/out/predictions.csv")
        except OSError as error:
            raise RuntimeError("a library's wrapper") from error  # as torch and MONAI wrap what they call

    monkeypatch.setattr(cli, "_validate", verb)
    assert main(["validate", "config.yaml"]) == 2
    assert _one_error_line(capsys) == "/data/out/predictions.csv: cannot write (Read-only file system)"
