"""The fine-tuned model as one artifact: a run's weights after stage N (or a base model with adapters
merged in order), written as a standard Hugging Face model folder.

Run as: gradual model merge --run runs/demo --out runs/demo/final [--stage N] [--force]
        gradual model merge --model smollm2-135m --adapter A1 --adapter A2 --out merged/

Why a merge at all: each stage of a run trains a fresh LoRA adapter over the weights the stages before
it left (merged in), so stage 2's adapter on the *base* model is a model gradual never evaluated. The
weights after stage N are rebuilt exactly as the run rebuilt them for its re-probes and its test
evaluation (gradual.pipeline.Pipeline.model_after: the latest full weights, then the later adapters
merged in order), on the run's own device and dtype, so the folder holds the weights the run measured.

The folder: model.safetensors (+ config.json, generation_config.json), the tokenizer's files, and
gradual.json (the run, stage, strategy, seed, base model and both fingerprints). It is written to a
temporary folder beside `--out` and renamed into place, so an interrupted merge leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from gradual.atomic import atomic_dir, write_json
from gradual.errors import UserError

MANIFEST = "gradual.json"


@dataclass
class RunWeights:
    """Which weights of a finished run: its config, the stage, and what describes them."""

    cfg: Any  # gradual.config.RunConfig
    run: Path
    stage: int
    stages: int  # stages the run recorded
    summary: dict[str, Any] = field(default_factory=dict)


def check_run_flags(run: Any, stage: int | None, *, adapters: Sequence[Any] = (), other_model: bool = False) -> None:
    """The flags that pick weights: --run (with --stage) or --model (with --adapter), never both."""
    if run is not None and (adapters or other_model):
        raise UserError("--run: give either --run (a run's own weights) or --model/--adapter, not both")
    if run is None and stage is not None:
        raise UserError("--stage: only with --run")


def finished_run(run: str | Path, stage: int | None = None, flag: str = "--run") -> RunWeights:
    """Check that `run` is a finished run folder with stage `stage` (default: its last) and read its config."""
    from gradual.run_config import config_from_mapping
    from gradual.rundir import RunDir

    run = Path(run)
    rd = RunDir(run)
    cfg_path, summary_path = rd.config, rd.summary
    if not cfg_path.is_file():
        raise UserError(f"{flag}: {run}: not a run folder (no config.yaml)")
    if not summary_path.is_file():
        raise UserError(f"{flag}: {run}: the run is not finished (no summary.json); finish it with "
                        f"`gradual run --config {cfg_path} --out {run} --resume`")
    try:
        record = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{flag}: {run}: unreadable run record ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise UserError(f"{flag}: {cfg_path}: no 'config' mapping (not written by gradual run?)")
    cfg = config_from_mapping(record["config"], str(cfg_path))
    stages = len(summary.get("stages") or [])
    if stage is None:
        stage = stages
    if not 0 <= stage <= stages:
        raise UserError(f"--stage: {run} has stages 1..{stages} (0: the base model); got {stage}")
    return RunWeights(cfg, run, stage, stages, summary)


def load_run_model(rw: RunWeights, device: str | None = None, dtype: str | None = None) -> Any:
    """The LoadedModel of a run's weights after stage rw.stage, as the run itself rebuilt them."""
    from gradual.pipeline import Pipeline

    cfg = rw.cfg
    if device not in (None, "", "auto") or dtype not in (None, "", "auto"):
        import dataclasses

        cfg = dataclasses.replace(cfg, device=device or cfg.device, dtype=dtype or cfg.dtype)
    return Pipeline(cfg, rw.run, progress=False).model_after(rw.stage)


def check_out(out: str | Path, force: bool) -> Path:
    out = Path(out)
    if out.exists() and not force:
        raise UserError(f"--out: {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, not a folder")
    from gradual.preflight import writable_folder

    writable_folder(out.absolute().parent)  # the new folder is made beside --out, then renamed
    return out


def save_merged(lm: Any, out: str | Path, manifest: dict[str, Any], *, force: bool = False) -> Path:
    """Write `lm` as a Hugging Face model folder with gradual.json, atomically (temp folder + rename)."""
    from gradual import __version__
    from gradual.lm.load import model_fingerprint

    out = check_out(out, force)
    model = lm.model
    if hasattr(model, "merge_and_unload"):  # a PeftModel left unmerged: the folder holds plain weights
        model = model.merge_and_unload()
    meta = {**manifest, "fingerprint": model_fingerprint(model),
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."), "created_by": f"gradual {__version__}"}
    try:
        with atomic_dir(out) as tmp:  # --force: the old folder goes only once the new one is complete
            model.save_pretrained(tmp, safe_serialization=True)
            lm.tokenizer.save_pretrained(tmp)
            write_json(tmp / MANIFEST, meta)
    except OSError as exc:
        raise UserError(f"--out: {out}: could not write the merged model ({exc.strerror or exc})") from None
    return out


def merge_run(run: str | Path, out: str | Path, *, stage: int | None = None, force: bool = False,
              device: str | None = None, dtype: str | None = None) -> Path:
    """`gradual model merge --run`: the run's weights after `stage` (default: the last) as one folder."""
    rw = finished_run(run, stage)
    check_out(out, force)  # before the model loads
    lm = load_run_model(rw, device, dtype)
    manifest = {
        "run": str(rw.run.resolve()), "stage": rw.stage, "stages": rw.stages, "strategy": rw.cfg.strategy,
        "seed": rw.cfg.seed, "base_model": rw.cfg.model, "base_fingerprint": rw.summary.get("model_fingerprint"),
        "lora": rw.cfg.train.lora,
    }
    return save_merged(lm, out, manifest, force=force)


def merge_adapters(model: str, adapters: Sequence[str | Path], out: str | Path, *, force: bool = False,
                   device: str | None = None, dtype: str | None = None) -> Path:
    """`gradual model merge --model --adapter ...`: a base model with adapters merged in order."""
    from gradual.lm.load import load_with_adapters

    check_out(out, force)
    lm = load_with_adapters(model, adapters, device, dtype)
    manifest = {"base_model": model, "adapters": [str(Path(a).resolve()) for a in adapters]}
    return save_merged(lm, out, manifest, force=force)
