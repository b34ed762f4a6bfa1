"""Importers: read a public QA format, validate all of it, then write one dataset folder.

Run as: gradual data import --format popqa popQA.tsv --out data/popqa --seed 0

Formats: jsonl, csv, tsv, entityquestions, popqa, triviaqa, nq-open, hf (see FORMATS). Every
input error is a UserError naming the file (and line, or record index where a format has no
lines); nothing is written until the whole input has been read and validated, and the dataset
folder then appears in one rename (splits.write_dataset).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from gradual import __version__
from gradual.answers import normalize
from gradual.data.items import SPLITS, Item, item_from_dict, iter_json_lines, read_user_text
from gradual.data.splits import check_fracs, check_unique_ids, split_items, write_dataset
from gradual.errors import UserError, where


@dataclass(frozen=True)
class ImportOptions:
    """Column choices for csv/tsv (and the hf format): None means "use the usual name if present"."""

    question_col: str = "question"
    answer_col: str | None = None  # default: "answers", else "answer"
    alias_sep: str = "|"
    relation_col: str | None = None  # default: "relation" if present
    subject_col: str | None = None  # default: "subject" if present
    id_col: str | None = None  # default: "id" if present, else <file stem>:<line>


@dataclass
class Loaded:
    """What a reader returns: either its own splits (kept) or one pool of items (split by seed)."""

    items: list[Item] = field(default_factory=list)
    splits: dict[str, list[Item]] | None = None


# --- reading text and JSON with locations ------------------------------------------------------


def read_text(path: Path) -> str:
    return read_user_text(path)


def _json_error(path: Path, exc: json.JSONDecodeError) -> UserError:
    return UserError(f"{where(path, exc.lineno)}: malformed JSON ({exc.msg})")


def load_json(path: Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None


def json_array_with_lines(path: Path) -> Iterator[tuple[Any, int]]:
    """Yield (element, line) for a file holding one JSON array, so errors can name the line."""
    text = read_text(path)
    dec = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("[", pos):
        raise UserError(f"{where(path, text.count(chr(10), 0, pos) + 1)}: expected a JSON list")
    pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
    if text.startswith("]", pos):
        return
    line, counted = 1, 0  # lines counted incrementally: files run to many MB

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    while True:
        try:
            obj, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise _json_error(path, exc) from None
        yield obj, line_at(pos)
        pos = ws.match(text, end).end()  # type: ignore[union-attr]
        if text.startswith(",", pos):
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
            continue
        if text.startswith("]", pos) and not text[pos + 1 :].strip():
            return
        raise UserError(f"{where(path, line_at(pos))}: malformed JSON (expected ',' or ']' in the list)")


def jsonl_rows(path: Path) -> Iterator[tuple[Any, int]]:
    """(object, line) per JSONL line, through the one JSONL reader; an empty file is an error here."""
    empty = True
    for lineno, obj in iter_json_lines(path):
        empty = False
        yield obj, lineno
    if empty:
        raise UserError(f"{path}: empty file")


def table_rows(path: Path, delimiter: str) -> tuple[list[str], Iterator[tuple[dict[str, str], int]]]:
    """Header and (row dict, line) pairs of a CSV/TSV file."""
    text = read_text(path)
    csv.field_size_limit(1 << 24)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        raise UserError(f"{where(path, 1)}: {exc}") from None

    def rows() -> Iterator[tuple[dict[str, str], int]]:
        start = reader.line_num + 1
        try:
            for row in reader:
                line = start
                start = reader.line_num + 1
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(header):
                    raise UserError(f"{where(path, line)}: {len(row)} fields, the header has {len(header)}")
                yield dict(zip(header, row)), line
        except csv.Error as exc:
            raise UserError(f"{where(path, reader.line_num)}: {exc}") from None

    return header, rows()


# --- building items ------------------------------------------------------------------------------


def dedupe_answers(answers: list[Any]) -> list[Any]:
    """Drop aliases equal to an earlier answer after normalization (keeps the canonical first).

    Non-strings pass through untouched so item validation reports them.
    """
    out: list[Any] = []
    seen: set[str] = set()
    for a in answers:
        if isinstance(a, str) and a.strip():
            key = normalize(a) or a.strip()
            if key in seen:
                continue
            seen.add(key)
        out.append(a)
    return out


class Collector:
    """Builds validated items, rejecting duplicate ids with both locations."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self._seen: dict[str, str] = {}

    def add(self, obj: dict[str, Any], path: Path | str, line: int | None) -> None:
        if isinstance(obj.get("answers"), list):
            obj = {**obj, "answers": dedupe_answers(obj["answers"])}
        item = item_from_dict(obj, path, line)
        loc = where(path, line)
        if item.id in self._seen:
            raise UserError(f"{loc}: duplicate id {item.id!r} (first at {self._seen[item.id]})")
        self._seen[item.id] = loc
        self.items.append(item)

    def result(self, path: Path) -> list[Item]:
        if not self.items:
            raise UserError(f"{path}: no items")
        return self.items


def _need_list(obj: dict[str, Any], key: str, loc: str) -> list[Any]:
    val = obj.get(key)
    if val is None:
        raise UserError(f"{loc}: missing '{key}'")
    if not isinstance(val, list):
        raise UserError(f"{loc}: '{key}' must be a list of strings, got {type(val).__name__}")
    if not val:
        raise UserError(f"{loc}: '{key}' is empty")
    return val


def _need_object(obj: Any, loc: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise UserError(f"{loc}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _opt_str(val: Any) -> str | None:
    if val is None:
        return None
    s = str(val).strip()
    return s or None


# --- answer cells: a JSON-encoded list or a plain string ------------------------------------------

# Shown with a malformed JSON-looking cell: the escape hatch for an answer that really starts with "[".
_LITERAL_HINT = "a cell starting with '[' is read as a JSON list of answers; write a literal answer as [\"...\"]"


def json_string_list(text: str, loc: str, col: str, hint: str = "") -> list[str]:
    """`text` parsed as a JSON list of strings (blank items dropped); a UserError naming loc and col else."""
    tail = f"; {hint}" if hint else ""
    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{loc}: '{col}' is not a JSON list ({exc.msg}){tail}") from None
    if not isinstance(val, list):
        raise UserError(f"{loc}: '{col}' must be a JSON list, got {type(val).__name__}")
    bad = next((k for k, a in enumerate(val) if not isinstance(a, str)), None)
    if bad is not None:
        raise UserError(f"{loc}: '{col}' must be a JSON list of strings, item {bad} is {type(val[bad]).__name__}")
    answers = [a for a in val if a.strip()]
    if not answers:
        raise UserError(f"{loc}: '{col}' is empty")
    return answers


def answers_from_cell(cell: str, loc: str, col: str, sep: str = "") -> list[str]:
    """The answers in one string cell (csv, tsv, or a string column of an hf dataset).

    Hub and spreadsheet exports often store the alias list JSON-encoded inside a string, e.g.
    PopQA's '["Paris", "City of Light"]', so a cell starting with "[" is read as that list. A
    malformed one ('[Paris') is an error, not a literal answer: it is almost always a broken
    export, and kept as-is it would be an answer no model output can ever match. Any other cell
    is split on `sep` (when given); blank parts are dropped.
    """
    text = cell.strip()
    if text.startswith("["):
        return json_string_list(text, loc, col, _LITERAL_HINT)
    answers = [a.strip() for a in text.split(sep)] if sep else [text]
    answers = [a for a in answers if a]
    if not answers:
        raise UserError(f"{loc}: empty answer in column {col!r}")
    return answers


# --- readers, one per format ---------------------------------------------------------------------


def read_jsonl(path: Path, opts: ImportOptions) -> Loaded:
    """Our item JSONL; `id` is optional (default <stem>:<line>), `answer` (str) is accepted."""
    col = Collector()
    for obj, line in jsonl_rows(path):
        loc = where(path, line)
        obj = dict(_need_object(obj, loc))
        if "answers" not in obj and isinstance(obj.get("answer"), str):
            obj["answers"] = [obj.pop("answer")]
        obj.setdefault("id", f"{path.stem}:{line}")
        col.add(obj, path, line)
    return Loaded(col.result(path))


def _pick(header: list[str], given: str | None, flag: str, path: Path, *defaults: str) -> str | None:
    """The column to use: the one named by the flag (must exist) or the first default present."""
    if given is not None:
        if given not in header:
            raise UserError(f"{where(path, 1)}: no column {given!r} ({flag}); columns are: {', '.join(header)}")
        return given
    return next((d for d in defaults if d in header), None)


def _read_table(path: Path, opts: ImportOptions, delimiter: str) -> Loaded:
    header, rows = table_rows(path, delimiter)
    qcol = _pick(header, opts.question_col, "--question-col", path)
    acol = _pick(header, opts.answer_col, "--answer-col", path, "answers", "answer")
    if acol is None:
        raise UserError(f"{where(path, 1)}: no column 'answers' or 'answer' (--answer-col); columns are: {', '.join(header)}")
    rcol = _pick(header, opts.relation_col, "--relation-col", path, "relation")
    scol = _pick(header, opts.subject_col, "--subject-col", path, "subject")
    icol = _pick(header, opts.id_col, "--id-col", path, "id")
    col = Collector()
    for row, line in rows:
        answers = answers_from_cell(row[acol], where(path, line), acol, opts.alias_sep)
        obj = {
            "id": (row[icol].strip() if icol else "") or f"{path.stem}:{line}",
            "question": row[qcol or ""],
            "answers": answers,
            "relation": _opt_str(row[rcol]) if rcol else None,
            "subject": _opt_str(row[scol]) if scol else None,
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
                "id": _opt_str(row.get("id")) or f"{path.stem}:{line}",
                "question": row["question"],
                "answers": answers,
                "relation": _opt_str(row.get("prop")),
                "subject": _opt_str(row.get("subj")),
            },
            path,
            line,
        )
    return Loaded(col.result(path))


def read_triviaqa(path: Path, opts: ImportOptions) -> Loaded:
    """TriviaQA JSON: {"Data": [{"Question", "Answer": {"Value", "Aliases"}, "QuestionId"}]}."""
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("Data"), list):
        raise UserError(f"{path}: expected a JSON object with a 'Data' list (a TriviaQA file)")
    col = Collector()
    for i, rec in enumerate(doc["Data"]):
        loc = f"{path}: Data[{i}]"
        rec = _need_object(rec, loc)
        ans = rec.get("Answer")
        if not isinstance(ans, dict):
            raise UserError(f"{loc}: missing 'Answer' object")
        value = ans.get("Value")
        aliases = ans.get("Aliases", [])
        if not isinstance(aliases, list):
            raise UserError(f"{loc}: 'Answer.Aliases' must be a list of strings")
        answers = ([value] if isinstance(value, str) and value.strip() else []) + aliases
        if not answers:
            raise UserError(f"{loc}: empty answers (no 'Answer.Value' or 'Answer.Aliases')")
        q = rec.get("Question")
        if not isinstance(q, str) or not q.strip():
            raise UserError(f"{loc}: missing or blank 'Question'")
        col.add({"id": _opt_str(rec.get("QuestionId")) or f"{path.stem}:{i}", "question": q, "answers": answers}, loc, None)
    return Loaded(col.result(path))


def read_nq_open(path: Path, opts: ImportOptions) -> Loaded:
    """NQ-open JSONL: {"question": str, "answer": [str, ...]} per line (an `id` if present)."""
    col = Collector()
    for obj, line in jsonl_rows(path):
        loc = where(path, line)
        obj = _need_object(obj, loc)
        answers = _need_list(obj, "answer", loc)
        col.add({"id": _opt_str(obj.get("id")) or f"{path.stem}:{line}", "question": obj.get("question"), "answers": answers}, path, line)
    return Loaded(col.result(path))


_EQ_SPLIT_DIRS = {"train": "train", "dev": "dev", "test": "test"}


def _template_subjects(questions: list[str]) -> list[str | None]:
    """Subjects from one relation's questions, by stripping the prefix and suffix they all share.

    EntityQuestions writes each relation from one template ("Which country is [X] located in?"),
    so the shared prefix/suffix, cut back to word boundaries, is the template and what is left
    is the subject. With fewer than 3 distinct questions the template is not trustworthy: None.
    """
    distinct = sorted(set(questions))
    if len(distinct) < 3:
        return [None] * len(questions)
    pre = os.path.commonprefix(distinct)
    suf = os.path.commonprefix([q[::-1] for q in distinct])[::-1]
    # The prefix must end after a space; the suffix must start at a non-word character.
    pre = pre[: pre.rfind(" ") + 1] if " " in pre else ""
    k = 0
    while k < len(suf) and (suf[k].isalnum() or suf[k] == "_"):
        k += 1
    suf = suf[k:]
    out: list[str | None] = []
    for q in questions:
        end = len(q) - len(suf)
        subj = q[len(pre) : end].strip() if end > len(pre) else ""
        out.append(subj or None)
    return out


def read_entityquestions(path: Path, opts: ImportOptions) -> Loaded:
    """EntityQuestions folder: <split>/<relation>.<split>.json, each a list of {question, answers}."""
    if not path.exists():
        raise UserError(f"{path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{path}: expected the EntityQuestions folder (with train/, dev/, test/)")
    files: dict[str, list[Path]] = {}
    for split, dirname in _EQ_SPLIT_DIRS.items():
        d = path / dirname
        found = sorted(d.glob(f"*.{dirname}.json")) if d.is_dir() else []
        if not found:
            raise UserError(f"{d}: no <relation>.{dirname}.json files (expected the EntityQuestions layout)")
        files[split] = found
    # Read every file first: subjects are derived per relation across all its splits.
    raw: list[tuple[str, str, int, Path, dict[str, Any]]] = []
    for split, paths in files.items():
        for f in paths:
            relation = f.name[: -len(f".{_EQ_SPLIT_DIRS[split]}.json")]
            n = 0
            for n, (obj, line) in enumerate(json_array_with_lines(f), start=1):
                loc = where(f, line)
                obj = _need_object(obj, loc)
                _need_list(obj, "answers", loc)
                raw.append((split, relation, line, f, obj))
            if n == 0:
                raise UserError(f"{f}: empty list (no items)")
    by_rel: dict[str, list[int]] = {}
    for k, (_, relation, _, _, obj) in enumerate(raw):
        by_rel.setdefault(relation, []).append(k)
    subjects: dict[int, str | None] = {}
    for relation, ks in by_rel.items():
        qs = [q if isinstance(q := raw[k][4].get("question"), str) else "" for k in ks]
        for k, s in zip(ks, _template_subjects(qs)):
            subjects[k] = s
    col = Collector()
    splits: dict[str, list[Item]] = {s: [] for s in SPLITS}
    counters: dict[tuple[str, str], int] = {}
    for k, (split, relation, line, f, obj) in enumerate(raw):
        n = counters[(split, relation)] = counters.get((split, relation), 0) + 1
        col.add(
            {
                "id": _opt_str(obj.get("id")) or f"{relation}.{split}.{n}",
                "question": obj.get("question"),
                "answers": obj["answers"],
                "relation": relation,
                "subject": subjects[k],
            },
            f,
            line,
        )
        splits[split].append(col.items[-1])
    return Loaded(col.items, splits)


_HF_SPLITS = {"train": "train", "validation": "dev", "dev": "dev", "test": "test"}


def _hf_answers(val: Any, loc: str, col: str) -> Any:
    """Common answer shapes on the hub: a string (maybe a JSON-encoded list), a list,
    {"value", "aliases"}, {"text": [...]}. Other shapes are returned as they are, for the caller to reject."""
    if isinstance(val, str):
        return answers_from_cell(val, loc, col)
    if isinstance(val, dict):
        if "value" in val:
            aliases = val.get("aliases") or []
            return [val["value"], *aliases] if isinstance(aliases, list) else val
        if "text" in val:
            return val["text"] if isinstance(val["text"], list) else [val["text"]]
    return val


def read_hf(path: Path, opts: ImportOptions) -> Loaded:
    """A `datasets` dataset saved with save_to_disk (or a hub id, when online)."""
    import datasets

    src = str(path)
    if path.exists():
        try:
            ds = datasets.load_from_disk(src)
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise UserError(f"{path}: not a dataset saved with datasets.save_to_disk ({exc})") from None
    else:
        offline = any(os.environ.get(v, "") not in ("", "0", "false", "False") for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"))
        if offline or not re.fullmatch(r"[\w.-]+(/[\w.-]+)?", src):
            raise UserError(
                f"{path}: no such folder, and hub ids need network access"
                + (" (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set)" if offline else "")
                + "; pass a folder saved with datasets.save_to_disk"
            )
        try:
            ds = datasets.load_dataset(src)
        except Exception as exc:  # network, auth, missing dataset: all the user's to fix
            raise UserError(f"{path}: could not load from the hub ({type(exc).__name__}: {exc})") from None
    parts: dict[str, Any] = dict(ds) if isinstance(ds, datasets.DatasetDict) else {"train": ds}
    col = Collector()
    by_split: dict[str, list[Item]] = {s: [] for s in SPLITS}
    kept = set(parts) >= {"train", "test"} and bool(set(parts) & {"dev", "validation"})
    for name in sorted(parts, key=lambda n: (list(_HF_SPLITS).index(n) if n in _HF_SPLITS else 9, n)):
        part = parts[name]
        cols = list(part.column_names)
        loc0 = f"{path}[{name}]"
        qcol = opts.question_col if opts.question_col in cols else None
        if qcol is None:
            raise UserError(f"{loc0}: no column {opts.question_col!r} (--question-col); columns are: {', '.join(cols)}")
        acol = opts.answer_col or next((c for c in ("answers", "answer") if c in cols), None)
        if acol is None or acol not in cols:
            raise UserError(f"{loc0}: no column {acol or 'answers'!r} (--answer-col); columns are: {', '.join(cols)}")
        rcol = opts.relation_col or ("relation" if "relation" in cols else None)
        scol = opts.subject_col or ("subject" if "subject" in cols else None)
        icol = opts.id_col or ("id" if "id" in cols else None)
        for flag, c in (("--relation-col", rcol), ("--subject-col", scol), ("--id-col", icol)):
            if c is not None and c not in cols:
                raise UserError(f"{loc0}: no column {c!r} ({flag}); columns are: {', '.join(cols)}")
        for i, row in enumerate(part):
            loc = f"{loc0} row {i}"
            answers = _hf_answers(row[acol], loc, acol)
            if not isinstance(answers, list):
                raise UserError(f"{loc}: '{acol}' must be a list of strings, got {type(answers).__name__}")
            if not answers:
                raise UserError(f"{loc}: '{acol}' is empty")
            col.add(
                {
                    "id": _opt_str(row[icol]) if icol else f"{name}:{i}",
                    "question": row[qcol],
                    "answers": answers,
                    "relation": _opt_str(row[rcol]) if rcol else None,
                    "subject": _opt_str(row[scol]) if scol else None,
                },
                loc,
                None,
            )
            if kept:
                by_split[_HF_SPLITS.get(name, "train")].append(col.items[-1])
    return Loaded(col.result(path), by_split if kept else None)


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
