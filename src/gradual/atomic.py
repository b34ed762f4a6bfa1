"""Atomic file writes: write a temp file beside the target, fsync, then rename over it.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a
half-written file, even after kill -9.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def out_of_space(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a full disk. Libraries that write from native code
    (safetensors) raise their own error types that only say so in words."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if (isinstance(e, OSError) and e.errno in NO_SPACE) or "No space left on device" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """A full disk while writing `target` (or a temp file for it) becomes OSError(ENOSPC) naming
    `target`, whatever wrote: the CLI turns it into one line (gradual.cli)."""
    try:
        yield
    except Exception as exc:
        if out_of_space(exc) and not (isinstance(exc, OSError) and exc.filename == str(target)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target)) from exc
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it; set it straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file for writing; on success rename it to `path`, on error remove it."""
    target = Path(path)
    with _naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    # mkstemp makes 0600 files; outputs should get the usual permissions (0666 less the umask).
    os.chmod(tmp, 0o666 & ~current_umask())
    try:
        with _naming(target):
            with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=indent, ensure_ascii=False, sort_keys=False)
        fh.write("\n")


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> None:
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False))
            fh.write("\n")


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """Read a JSONL file that this package wrote (trusted; user files go through data.items)."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def read_json(path: str | os.PathLike[str]) -> Any | None:
    """A JSON file this package wrote, or None when it is missing or does not parse.

    Writes are atomic, so a damaged file (truncated by hand, a disk error) means the step that wrote it
    is not done: callers redo the step rather than stop on a JSONDecodeError.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def _follow_umask(folder: Path) -> None:
    """Give a folder's tree the modes the umask asks for: some writers (safetensors, mkdtemp) make
    0600 files and 0700 folders, which other users of a shared run folder then cannot read."""
    umask = current_umask()
    os.chmod(folder, 0o777 & ~umask)
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~umask)
        for f in files:
            os.chmod(os.path.join(root, f), 0o666 & ~umask)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a temp folder beside `final`, then move it into place in one rename.

    An existing `final` is renamed away first and removed only once the new folder stands, so a reader
    sees the old folder or the complete new one; on error the temp folder goes and `final` is left as
    it was. The folder gets the usual permissions (0777 less the umask), not mkdtemp's 0700.
    """
    final = Path(final)
    with _naming(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        with _naming(final):
            yield tmp
        _follow_umask(tmp)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "d")
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(old / "d", final)  # put the earlier folder back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
