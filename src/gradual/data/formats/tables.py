"""Table readers: csv, tsv (any columns, chosen by flags) and PopQA's TSV.

Run as: gradual data import --format csv my.csv --out data/mine --question-col q --answer-col a
"""

from __future__ import annotations

from pathlib import Path

from gradual.data.formats.common import (
    Collector,
    ImportOptions,
    Loaded,
    answers_from_cell,
    json_string_list,
    opt_str,
    pick_column,
    table_rows,
)
from gradual.errors import UserError, where


def _read_table(path: Path, opts: ImportOptions, delimiter: str) -> Loaded:
    header, rows = table_rows(path, delimiter)
    qcol = pick_column(header, opts.question_col, "--question-col", path)
    acol = pick_column(header, opts.answer_col, "--answer-col", path, "answers", "answer")
    if acol is None:
        raise UserError(f"{where(path, 1)}: no column 'answers' or 'answer' (--answer-col); columns are: {', '.join(header)}")
    rcol = pick_column(header, opts.relation_col, "--relation-col", path, "relation")
    scol = pick_column(header, opts.subject_col, "--subject-col", path, "subject")
    icol = pick_column(header, opts.id_col, "--id-col", path, "id")
    col = Collector()
    for row, line in rows:
        answers = answers_from_cell(row[acol], where(path, line), acol, opts.alias_sep)
        obj = {
            "id": (row[icol].strip() if icol else "") or f"{path.stem}:{line}",
            "question": row[qcol or ""],
            "answers": answers,
            "relation": opt_str(row[rcol]) if rcol else None,
            "subject": opt_str(row[scol]) if scol else None,
        }
        col.add(obj, path, line)
    return Loaded(col.result(path))


def read_csv(path: Path, opts: ImportOptions) -> Loaded:
    """CSV with a header; answers split on --alias-sep (or a JSON list in the cell)."""
    return _read_table(path, opts, ",")


def read_tsv(path: Path, opts: ImportOptions) -> Loaded:
    return _read_table(path, opts, "\t")


def read_popqa(path: Path, opts: ImportOptions) -> Loaded:
    """PopQA TSV: question, possible_answers (JSON list), prop (relation), subj, id."""
    header, rows = table_rows(path, "\t")
    for need in ("question", "possible_answers"):
        if need not in header:
            raise UserError(f"{where(path, 1)}: no column {need!r} (not a PopQA TSV); columns are: {', '.join(header)}")
    col = Collector()
    for row, line in rows:
        # PopQA's column is always JSON, so a bare string is an error here, not a single answer.
        answers = json_string_list(row["possible_answers"], where(path, line), "possible_answers")
        col.add(
            {
                "id": opt_str(row.get("id")) or f"{path.stem}:{line}",
                "question": row["question"],
                "answers": answers,
                "relation": opt_str(row.get("prop")),
                "subject": opt_str(row.get("subj")),
            },
            path,
            line,
        )
    return Loaded(col.result(path))
