"""Importers: read a public QA format, validate all of it, then write one dataset folder.

Run as: gradual data import --format popqa popQA.tsv --out data/popqa --seed 0

Formats: jsonl, csv, tsv, entityquestions, popqa, triviaqa, nq-open, hf (see FORMATS). Every
input error is a UserError naming the file (and line, or record index where a format has no
lines); nothing is written until the whole input has been read and validated, and the dataset
folder then appears in one rename (splits.write_dataset).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from gradual import __version__
from gradual.data.formats.benchmarks import read_entityquestions, read_triviaqa
from gradual.data.formats.common import ImportOptions, Loaded, json_array_with_lines
from gradual.data.formats.hf import read_hf
from gradual.data.formats.jsonl import read_jsonl, read_nq_open
from gradual.data.formats.tables import read_csv, read_popqa, read_tsv
from gradual.data.splits import check_fracs, check_unique_ids, split_items, write_dataset
from gradual.errors import UserError

# One reader per --format; each module holds one family (tables, line JSON, benchmark layouts, hf).
FORMATS: dict[str, Callable[[Path, ImportOptions], Loaded]] = {
    "jsonl": read_jsonl,
    "csv": read_csv,
    "tsv": read_tsv,
    "entityquestions": read_entityquestions,
    "popqa": read_popqa,
    "triviaqa": read_triviaqa,
    "nq-open": read_nq_open,
    "hf": read_hf,
}


def load_source(fmt: str, path: Path, opts: ImportOptions | None = None) -> Loaded:
    reader = FORMATS.get(fmt)
    if reader is None:
        raise UserError(f"--format: unknown format {fmt!r}; known formats: {', '.join(FORMATS)}")
    return reader(Path(path), opts or ImportOptions())


def import_dataset(
    fmt: str,
    path: Path,
    out: Path,
    seed: int = 0,
    dev_frac: float = 0.1,
    test_frac: float = 0.2,
    opts: ImportOptions | None = None,
) -> Path:
    """Read `path` in format `fmt`, split it (unless the source has splits), write dataset `out`."""
    check_fracs(dev_frac, test_frac)
    loaded = load_source(fmt, Path(path), opts)
    if loaded.splits is not None:
        splits, how = loaded.splits, "source"
    else:
        splits, how = split_items(loaded.items, seed, dev_frac, test_frac), "seeded"
    check_unique_ids(splits, str(path))
    meta: dict[str, Any] = {
        "format": fmt,
        "source": str(path),
        "seed": seed,
        "split": how,
        "dev_frac": dev_frac if how == "seeded" else None,
        "test_frac": test_frac if how == "seeded" else None,
        "created_by": f"gradual {__version__}",
    }
    return write_dataset(Path(out), splits, meta)


__all__ = ["FORMATS", "ImportOptions", "Loaded", "import_dataset", "json_array_with_lines", "load_source"]
