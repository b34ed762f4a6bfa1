"""One process per run folder: an OS file lock on `<folder>/.lock`, held while a run or compare works there.

Run as: used by gradual.pipeline.run_pipeline (a run folder) and gradual.compare.run_compare (a
compare folder).

Two `gradual run --out X` started together would otherwise both write X and mix their results.
The lock is `fcntl.flock` on `<folder>/.lock`: the kernel releases it when the process dies, however
it dies (kill -9 included), so a killed run needs no cleanup and `--resume` just takes it again. The
file holds the holder's pid, for the message the second process gets. Under a multi-process launch
only the main process locks (the ranks of one run are one run).
"""

from __future__ import annotations

import errno
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from gradual import distributed as dist
from gradual.errors import UserError

LOCK_NAME = ".lock"


def _holder(path: Path, wait_s: float = 1.0) -> str:
    """The holder's pid from the lock file. The holder writes it just after locking, so a process
    refused in that instant waits a moment for it rather than naming no one."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            pid = path.read_text(encoding="utf-8").strip()
        except OSError:
            pid = ""
        if pid.isdigit():
            return f"pid {pid}"
        if time.monotonic() > deadline:
            return "another process"
        time.sleep(0.02)


@contextmanager
def folder_lock(folder: Path, flag: str = "--out") -> Iterator[None]:
    """Hold the lock on `folder` (created if missing) for the body; UserError (exit 2) at once if
    another live process holds it. A folder this call created is removed again when the body raises
    before writing anything into it, so a refused or invalid run leaves the disk as it found it."""
    if not dist.is_main():
        yield
        return
    import fcntl

    folder = Path(folder)
    created = not folder.exists()
    from gradual.preflight import writable_folder

    writable_folder(folder, flag)  # a file, or a folder we may not write: refused before any work
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOCK_NAME
        fh: IO[str] = open(path, "a+", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{flag}: cannot write in {folder} ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise UserError(f"{flag}: {folder} is in use by {_holder(path)} (a gradual run or compare); "
                            "wait for it to end, or choose another folder") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        try:
            yield
        except BaseException:
            if created and {p.name for p in folder.iterdir()} <= {LOCK_NAME}:
                path.unlink(missing_ok=True)
                folder.rmdir()
            raise
    finally:
        fh.close()  # closing the descriptor releases the lock
