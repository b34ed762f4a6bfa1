"""Export selected items for other fine-tuning frameworks (LLaMA-Factory, axolotl, TRL).

Run as: gradual export --probe probe.jsonl --categories MaybeKnown --format alpaca --out data/mk.json
        gradual export --run runs/demo --stage 2 --format trl --out stage2.jsonl [--no-replay]
        or from Python: `export_items(select_from_probe(path, ("MaybeKnown",)), "chat", Path("mk.jsonl"))`

Sources: the rows of a probe file whose category is chosen, or the items one stage of a run trained
on (its train_items.jsonl, replay included unless dropped), optionally filtered by the category each
item had in the probe that stage was planned from.

Formats (one record per item; the canonical answer is the target, aliases are not exported):
    alpaca  {"instruction": question, "input": "", "output": answer}
    chat    {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
    trl     {"prompt": "Q: question\\nA:", "completion": " answer\\n"}   (gradual's zero-shot fine-tune format)
alpaca and chat are chat-style data: the framework wraps them in the model's chat template, exactly
like `gradual train --chat` (FinetuneFormat(chat=True): the plain question as the user turn). trl is
the plain-completion format `gradual train` uses by default, taken from FinetuneFormat(chat=False).

`--out` ending in .json gets one JSON array, anything else JSON Lines; both load with
`datasets.load_dataset("json", data_files=OUT)`. For alpaca and chat a LLaMA-Factory
`dataset_info.json` entry is merged into the file beside OUT (its documented alpaca / sharegpt
"OpenAI format" schema), so `dataset_dir` = OUT's folder and `dataset` = the entry name just work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from gradual.atomic import write_json, write_jsonl
from gradual.data.items import Item, item_from_dict, iter_json_lines
from gradual.errors import UserError, where
from gradual import categories
from gradual.categories import CATEGORIES
from gradual.prompts import FinetuneFormat
from gradual.rundir import RunDir, StageDir

# Each export format and what it is; the CLI's --format help is built from this.
FORMATS = {
    "alpaca": "instruction/input/output JSON",
    "chat": "OpenAI/ShareGPT messages",
    "trl": "prompt/completion in gradual's Q:/A: fine-tune format",
}
# Formats LLaMA-Factory reads natively; trl's raw "Q: ...\nA:" prompt would be wrapped in a chat
# template there, which is not the format it was probed and trained in.
DATASET_INFO_FORMATS = ("alpaca", "chat")
DATASET_INFO = "dataset_info.json"


@dataclass(frozen=True)
class ExportItem:
    item: Item
    category: str | None  # the item's category in the probe it was selected from (None: not in it)
    replay: bool = False  # a replay item of a run stage (always False from a probe file)


@dataclass(frozen=True)
class Selection:
    items: list[ExportItem]
    source: str  # what was read, for messages: "probe.jsonl [MaybeKnown]" or "runs/demo stage 2"

    def counts(self) -> dict[str, int]:
        """Items per category in CATEGORIES order, then "(none)" for items without one."""
        out = {c: sum(1 for e in self.items if e.category == c) for c in CATEGORIES}
        missing = sum(1 for e in self.items if e.category is None)
        if missing:
            out["(none)"] = missing
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class ExportResult:
    out: Path
    format: str
    n_items: int
    n_replay: int
    counts: dict[str, int]
    dataset_info: Path | None = None  # the LLaMA-Factory registry written, if any
    dataset_name: str | None = None
    dataset_info_action: str | None = None  # "added" or "updated"


# --- choosing items ------------------------------------------------------------------------------

def parse_categories(text: str) -> tuple[str, ...]:
    """`--categories` "MaybeKnown,WeaklyKnown" (any case, or "all") -> canonical names in CATEGORIES order."""
    try:
        return categories.parse_categories(text)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def read_probe_rows(path: Path) -> list[tuple[Item, str]]:
    """(item, category) per row of a probe file, validated with file:line errors.

    A probe row is an item plus its category, so it goes through the item validator. (Not
    probe.load_probe: its reader trusts the file, so a hand-edited or truncated probe file fails
    without a line number, and rows lacking question/answers would export as blank items.)
    """
    rows: list[tuple[Item, str]] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_json_lines(path):
        item = item_from_dict(obj, path, lineno)
        category = obj.get("category")
        if category not in CATEGORIES:
            raise UserError(f"{where(path, lineno)}: 'category' {category!r} is not one of {', '.join(CATEGORIES)} "
                            "(not a probe file?)")
        if item.id in seen:
            raise UserError(f"{where(path, lineno)}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen[item.id] = lineno
        rows.append((item, category))
    if not rows:
        raise UserError(f"{path}: no rows (empty probe file)")
    return rows


def select_from_probe(path: Path, categories: Sequence[str]) -> Selection:
    if not Path(path).exists():
        raise UserError(f"--probe {path}: no such probe file")
    rows = read_probe_rows(Path(path))
    chosen = [ExportItem(item, cat) for item, cat in rows if cat in categories]
    source = f"{path} [{','.join(categories)}]"
    if not chosen:
        have = {c: sum(1 for _, cat in rows if cat == c) for c in CATEGORIES}
        raise UserError(f"--categories: no item of {path} is {' or '.join(categories)} "
                        f"(it has {', '.join(f'{c} {n}' for c, n in have.items())})")
    return Selection(chosen, source)


def select_from_run(run: Path, stage: int, *, replay: bool = True,
                    categories: Sequence[str] | None = None) -> Selection:
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"--run {run}: no such run folder")
    rd = RunDir(run)
    stages = rd.stages()
    if not stages:
        raise UserError(f"--run {run}: not a run folder (no stages/stage<N>/)")
    if stage not in stages:
        raise UserError(f"--stage {stage}: {run} has stage{'s' if len(stages) > 1 else ''} "
                        f"{', '.join(map(str, stages))}")
    sdir = rd.stage(stage)
    items_path = rd.stage_dir(stage).train_items
    if not items_path.exists():
        note = _stage_note(sdir)
        raise UserError(f"--stage {stage}: {sdir} has no train_items.jsonl "
                        + (f"(the stage trained nothing: {note})" if note else "(the stage has not finished)"))
    # The probe the stage's items were selected from: base_train before stage 1, else the re-probe
    # after the previous stage.
    probe_path = rd.train_probe(stage - 1)
    if categories is not None and not probe_path.exists():
        raise UserError(f"--categories: {probe_path}: no such probe file (needed to filter stage {stage} by category)")
    cats = {item.id: cat for item, cat in read_probe_rows(probe_path)} if probe_path.exists() else {}
    chosen: list[ExportItem] = []
    for lineno, obj in iter_json_lines(items_path):
        item = item_from_dict(obj, items_path, lineno)
        is_replay = obj.get("replay", False)
        if not isinstance(is_replay, bool):
            raise UserError(f"{where(items_path, lineno)}: 'replay' must be true or false")
        if is_replay and not replay:
            continue
        e = ExportItem(item, cats.get(item.id), is_replay)
        if categories is None or e.category in categories:
            chosen.append(e)
    source = f"{run} stage {stage}" + ("" if replay else " (no replay)")
    if not chosen:
        what = f" of category {' or '.join(categories)}" if categories is not None else ""
        raise UserError(f"--stage {stage}: no items{what} in {items_path}" + ("" if replay else " without replay"))
    return Selection(chosen, source)


def _stage_note(sdir: Path) -> str | None:
    try:
        note = json.loads(StageDir(sdir).record.read_text(encoding="utf-8")).get("note")
    except (OSError, ValueError, AttributeError):
        return None
    return str(note) if note else None


# --- writing -------------------------------------------------------------------------------------

_COMPLETION = FinetuneFormat(chat=False)


def to_record(e: ExportItem, fmt: str, *, meta: bool = False) -> dict[str, Any]:
    """One output record; with `meta`, also id, category, relation and replay (traceability columns
    that frameworks ignore, off by default so the files hold only what each schema names)."""
    check_format(fmt)
    q, a = e.item.question, e.item.answer
    rec: dict[str, Any]
    if fmt == "alpaca":
        rec = {"instruction": q, "input": "", "output": a}
    elif fmt == "chat":
        rec = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    else:
        rec = {"prompt": _COMPLETION.prompt(q), "completion": _COMPLETION.target(a)}
    if meta:
        rec.update(id=e.item.id, category=e.category, relation=e.item.relation, replay=e.replay)
    return rec


def dataset_info_entry(fmt: str, file_name: str) -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json entry for our alpaca or chat file (data/README.md schema)."""
    if fmt == "alpaca":
        return {"file_name": file_name, "formatting": "alpaca",
                "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    if fmt == "chat":
        # The "OpenAI format" case of sharegpt: role/content keys instead of from/value.
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                         "assistant_tag": "assistant", "system_tag": "system"}}
    raise UserError(f"--dataset-info: LLaMA-Factory entries are written for {' and '.join(DATASET_INFO_FORMATS)}, "
                    f"not {fmt}")


def _read_dataset_info(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: malformed JSON ({exc}); fix it or pass --no-dataset-info") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a JSON object of dataset entries, got {type(obj).__name__}")
    return obj


def export_items(selection: Selection, fmt: str, out: Path, *, dataset_info: bool | None = None,
                 dataset_name: str | None = None, meta: bool = False) -> ExportResult:
    """Write `selection` to `out` in `fmt`; merge a LLaMA-Factory entry into out's folder's
    dataset_info.json (default: for alpaca and chat). Every check runs before the first write,
    and each file is replaced atomically."""
    check_format(fmt)
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder, expected a file name")
    if dataset_info is None:
        dataset_info = fmt in DATASET_INFO_FORMATS
    info_path = out.parent / DATASET_INFO
    if out.resolve() == info_path.resolve():
        raise UserError(f"--out {out}: that name is LLaMA-Factory's registry; choose another file name")
    name = dataset_name or out.stem
    registry: dict[str, Any] = {}
    entry: dict[str, Any] | None = None
    if dataset_info:
        entry = dataset_info_entry(fmt, out.name)
        registry = _read_dataset_info(info_path)
    records = [to_record(e, fmt, meta=meta) for e in selection.items]
    if out.suffix.lower() == ".json":
        write_json(out, records)
    else:
        write_jsonl(out, records)
    action = None
    if entry is not None:
        action = "updated" if name in registry else "added"
        registry[name] = entry
        write_json(info_path, registry)
    return ExportResult(out=out, format=fmt, n_items=len(records),
                        n_replay=sum(1 for e in selection.items if e.replay), counts=selection.counts(),
                        dataset_info=info_path if entry is not None else None,
                        dataset_name=name if entry is not None else None, dataset_info_action=action)
