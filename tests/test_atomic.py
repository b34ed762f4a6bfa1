"""Atomic writes (gradual.atomic): a writer that runs out of space leaves neither the output nor its temp."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from gradual.atomic import atomic_dir, atomic_open
from gradual.cli import world_error


def test_a_native_writer_out_of_space_is_named_by_the_folder(tmp_path: Path) -> None:
    class SafetensorError(Exception):  # what safetensors raises from Rust: a message, no errno
        pass

    with pytest.raises(OSError) as caught:
        with atomic_dir(tmp_path / "adapter") as tmp:
            (tmp / "half").write_text("x")
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                  "message: \"No space left on device\" })")
    assert caught.value.errno == errno.ENOSPC
    assert world_error(caught.value) == (f"no space left on device writing {tmp_path / 'adapter'}; free space "
                                         "and run the command again (gradual run: with --resume)")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temp
    with pytest.raises(OSError) as caught:
        with atomic_open(tmp_path / "x.json") as fh:
            fh.write("{")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".x.json.123.tmp"))
    assert caught.value.filename == str(tmp_path / "x.json")  # the file meant, not its temp
    assert list(tmp_path.iterdir()) == []
