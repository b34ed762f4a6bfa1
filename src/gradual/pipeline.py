"""`gradual run`: the whole method in order, in one run folder, resumable at every step.

Run as: gradual run --config configs/default.yaml --out runs/demo [--resume]

    probe train + test with the base model (exemplars from dev)
    -> for each stage the strategy plans: train (early stop on dev) -> merge -> re-probe train
    -> greedy exact match on test with the final model -> summary.json -> report.html

Resume: every step's output is written atomically and is the step's "done" marker, so after a
kill (even -9) `--resume` skips finished steps. The model after stage k is always rebuilt the same
way, base weights + the saved adapters of stages 1..k merged in order, whether the run was
interrupted or not; that is what makes a resumed run end with the same summary.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from gradual import __version__
from gradual import distributed as dist
from gradual.atomic import read_json, write_json, write_text
from gradual.config import RunConfig, to_dict
from gradual.data.items import Item, load_dataset_dir, seeded_subset
from gradual.errors import UserError
from gradual.lm.spec import check_model_spec
from gradual.rundir import RunDir, StageDir, train_probe_name

if TYPE_CHECKING:  # torch loads only when a model does: a bad config or --model fails in a second
    from gradual.lm.load import LoadedModel


DEFAULT_WORLD = Path("data/world")


def library_versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    return {"gradual": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "transformers": str(transformers.__version__), "peft": str(peft.__version__)}


def _subset(items: list[Item], limit: int) -> list[Item]:
    """A deterministic subset independent of the run seed (seed 0), so every run of a compare probes the
    same items and shares the base probe from the cache."""
    return seeded_subset(items, limit, seed=0) if limit else items


@dataclass
class RunData:
    train: list[Item]
    dev: list[Item]
    test: list[Item]
    source: str


def load_run_data(cfg: RunConfig) -> RunData:
    path = Path(cfg.data)
    if not path.exists() and path.resolve() == DEFAULT_WORLD.resolve():
        from gradual.data.world import ensure_world

        ensure_world(path, seed=0)
    ds = load_dataset_dir(path)
    return RunData(_subset(ds.train, cfg.limit_train), ds.dev, _subset(ds.test, cfg.limit_test), str(path))


def check_run_data(cfg: RunConfig) -> RunData:
    """Load the run's data and refuse what cannot work, on every rank alike, before anything is written
    or any model loads (a refused run leaves its folder as it found it)."""
    data = load_run_data(cfg)
    if len(data.train) == 0:
        raise UserError(f"{data.source}: the train split is empty")
    dist.check_shardable(len(data.train), f"{data.source}: the train split")
    if data.test:
        dist.check_shardable(len(data.test), f"{data.source}: the test split")
    dist.per_process_batch(cfg.train.batch_size, cfg.train.grad_accum)
    return data


def _config_record(cfg: RunConfig, command: str) -> dict[str, Any]:
    return {"config": to_dict(cfg), "seed": cfg.seed, "command": command, "versions": library_versions()}


def _check_run_dir(out: Path, cfg: RunConfig, resume: bool) -> None:
    rd = RunDir(out)
    cfg_path = rd.config
    if cfg_path.exists():
        if not resume:
            raise UserError(f"--out: {out} already holds a run; pass --resume to continue it or choose a new folder")
        was = rd.recorded_identity()
        if was is None:
            raise UserError(f"--resume: {cfg_path} is damaged (not a run record); start the run in a new folder")
        now = rd.identity(cfg)
        if was != now:
            changed = sorted(k for k, v in now.items() if was.get(k) != v) or ["unreadable"]
            raise UserError(f"--resume: {cfg_path} was made with a different config (differs in: {', '.join(changed)})")


class Pipeline:
    """One run: holds the config, the run folder and the categories history."""

    def __init__(self, cfg: RunConfig, out: Path, *, progress: bool = True, command: str = "",
                 stage_cache: Path | None = None) -> None:
        from gradual.train.cache import StageCache

        self.cfg, self.out, self.progress, self.command = cfg, out, progress, command
        self.stage_cache = StageCache(stage_cache) if stage_cache is not None else None
        self.rd = RunDir(out)
        self.t0 = time.time()

    def tracker_name(self, part: str) -> str:
        """The name `report_to` trackers (W&B, MLflow) give one part of this run: `<run folder>/<part>`,
        so the stages of the runs of a compare, or of two run folders, are told apart there."""
        return f"{self.out.resolve().name}/{part}"

    # -- model -----------------------------------------------------------------------------
    def model_after(self, stages: int) -> LoadedModel:
        """The weights after stage `stages`, rebuilt the same way whether or not the run was resumed.

        One contract for LoRA and full fine-tuning: the latest stage <= `stages` that saved full
        weights (`model/`) is the starting point (else the base model), and the LoRA adapters of the
        stages after it are merged in order. A stage that trained nothing has neither folder."""
        from gradual.lm.load import load_with_adapters

        rd = self.rd
        start = next((k for k in range(stages, 0, -1) if rd.full_model(k).exists()), 0)
        adapters = [rd.adapter(k) for k in range(start + 1, stages + 1) if rd.adapter(k).exists()]
        return load_with_adapters(self.cfg.model, adapters, self.cfg.device, self.cfg.dtype,
                                  full=rd.full_model(start) if start else None)

    # -- probe -----------------------------------------------------------------------------
    def _engine_for(self, lm: LoadedModel) -> Any:
        """One engine per model: the base train and test probes use the same exemplar sets (both drawn
        from dev with the run's probe seed), so the test probe finds their prefix KV cached. An engine
        that loads its own weights is left to probe(), which builds it only if a pass is not cached."""
        from gradual.lm.backends import get_backend, make_engine

        c = self.cfg.probe
        if get_backend(c.backend).loads_weights:
            return None
        if getattr(self, "_engine_model", None) is not lm.model:
            self._engine = make_engine(c.backend, lm, batch_size=c.batch_size, max_new_tokens=c.max_new_tokens,
                                       top_k=c.top_k, seed=c.seed)
            self._engine_model = lm.model
        return self._engine

    def probe_split(self, lm: LoadedModel, name: str, items: list[Item], exemplars: list[Item],
                    stage: int | None = None) -> Any:
        """Probe `items` (or load the finished probe); a fresh probe of the train split after `stage`
        stages also sends its category counts to train.report_to (step = stage)."""
        from gradual.probe import load_probe, probe, save_probe

        path = self.rd.probe(name)
        # Main reads a finished probe and hands it to every rank: all follow the same stage plans.
        done = dist.on_main(lambda: load_probe(path) if path.exists() else None)
        if done is not None:
            return done
        # The noise control (probe.repeat) measures chance flips once, on the base model's train probe;
        # repeating every re-probe would multiply their cost and no figure reads it.
        cfg = self.cfg.probe if name == train_probe_name(0) else dataclasses.replace(self.cfg.probe, repeat=0)
        result = probe(lm, items, exemplars, cfg, progress=self.progress, desc=f"probe {name}",
                       engine=self._engine_for(lm))
        if dist.is_main():  # every rank holds the gathered result; one writes it
            save_probe(result, path)
            if stage is not None:
                from gradual.metrics import category_counts
                from gradual.train import log_to_trackers

                counts = category_counts(result.categories())
                log_to_trackers(self.cfg.train.report_to, self.rd.logs("probe"), self.tracker_name("probe"),
                                {f"probe_{cat}": n for cat, n in counts.items()}, step=stage)
        return result

    # -- run -------------------------------------------------------------------------------
    def start(self, lm: LoadedModel, data: RunData) -> None:
        """The last checks, which need the tokenizer (every prompt fits the model's context), then the
        run's record (config.yaml): a run refused by any check leaves its folder as it found it."""
        from gradual.probe.run import as_computed, check_prompts_fit, exemplar_assignments

        c = as_computed(self.cfg.probe)
        seeds = [c.seed + r for r in range(c.repeat + 1)]
        check_prompts_fit(lm, data.train, data.dev, c, exemplar_assignments(data.train, data.dev, c, seeds))
        check_prompts_fit(lm, data.test, data.dev, c, exemplar_assignments(data.test, data.dev, c, seeds[:1]))
        if dist.is_main() and not self.rd.config.exists():  # only the main process writes the run folder
            self.out.mkdir(parents=True, exist_ok=True)
            write_text(self.rd.config, yaml.safe_dump(_config_record(self.cfg, self.command), sort_keys=False))

    def run(self, data: RunData) -> dict[str, Any]:
        """Every step of the run on `data` (checked by check_run_data before the folder was written)."""
        from gradual.strategies import plan_stage

        cfg = self.cfg
        from gradual.lm.load import load_model

        lm = load_model(cfg.model, cfg.device, cfg.dtype)
        self.start(lm, data)
        _say(f"model {cfg.model} on {lm.placement.reason}; {len(data.train)} train / {len(data.dev)} dev / "
             f"{len(data.test)} test items; strategy {cfg.strategy}, seed {cfg.seed}")
        base_train = self.probe_split(lm, train_probe_name(0), data.train, data.dev, stage=0)
        base_test = self.probe_split(lm, "base_test", data.test, data.dev)
        history: list[dict[str, str]] = [base_train.categories()]
        stage_records: list[dict[str, Any]] = []
        stage = 0
        while True:
            plan = plan_stage(cfg.strategy, stage + 1, data.train, history, cfg)
            if plan is None:
                break
            stage += 1
            # Training loads its own copy of the weights: the probed model (and its engine's prefix
            # caches) need not stay in memory beside it.
            lm, self._engine, self._engine_model = None, None, None
            record = self.run_stage(stage, plan, data, history[-1])
            stage_records.append(record)
            if record["n_train"] == 0:
                _say(f"stage {stage}: nothing to train ({record['note']}); stopping")
                history.append(dict(history[-1]))
                break
            lm = self.model_after(stage)
            history.append(self.probe_split(lm, train_probe_name(stage), data.train, data.dev,
                                            stage=stage).categories())
        if lm is None:  # the last stage trained nothing: the weights are those after the stage before
            lm = self.model_after(stage - 1)
        summary = self.finish(lm, data, history, stage_records, base_train, base_test)
        return summary

    def run_stage(self, k: int, plan: Any, data: RunData, cats: Mapping[str, str]) -> dict[str, Any]:
        from gradual.train import train_stage

        sdir = self.rd.stage(k)
        done = self.rd.stage_record(k)  # the pipeline's record; train_stage writes its own stage.json
        finished = dist.on_main(lambda: read_json(done))  # damaged (not by us: writes are atomic): redo
        if finished is not None:
            return finished  # type: ignore[no-any-return]
        composition = _composition(plan.items, cats)
        record: dict[str, Any] = {"name": plan.name, "stage": k, "n_train": len(plan.items), "n_replay": 0,
                                  "composition": composition, "best_epoch": None, "dev_accuracy": None,
                                  "wall_s": 0.0, "note": plan.note}
        if plan.items:
            from gradual.categories import SHORT, ordered

            comp = ", ".join(f"{SHORT.get(c, c)} {composition[c]}" for c in ordered(composition))
            # Short enough for 80 columns; the full note is in the stage record and summary.json.
            _say(f"stage {k}: training on {len(plan.items)} items ({comp})"
                 + (f", replay pool {len(plan.replay)}" if plan.replay else ""))
            lm = self.model_after(k - 1)
            key, cached = self._cached_stage(lm, plan, data, sdir)
            if cached is not None:
                record.update(cached)
            else:
                res = train_stage(lm, plan.items, data.dev, plan.train, sdir, replay_items=plan.replay,
                                  progress=self.progress, name=plan.name, tracker_name=self.tracker_name(plan.name))
                record.update(n_replay=res.n_replay, best_epoch=res.best_epoch, dev_accuracy=res.dev_accuracy,
                              wall_s=round(res.wall_s, 2))
                if self.stage_cache is not None and key is not None:
                    cache = self.stage_cache
                    dist.on_main(lambda: cache.try_put(key, sdir, plan.train.lora))
                    record["stage_cache"] = "miss"
                del res
            del lm
        elif dist.is_main():
            sdir.mkdir(parents=True, exist_ok=True)
        if dist.is_main():
            write_json(done, record)
        return record

    def _cached_stage(self, lm: LoadedModel, plan: Any, data: RunData,
                      sdir: Path) -> tuple[str | None, dict[str, Any] | None]:
        """(the stage's cache key, its record fields copied from the cache): (None, None) without a
        stage cache (a lone run), (key, None) on a miss (train it, then put it under key)."""
        if self.stage_cache is None:
            return None, None
        from gradual.train.cache import stage_key

        t0 = time.perf_counter()
        cache = self.stage_cache
        key = dist.on_main(lambda: stage_key(lm, plan.items, plan.replay, data.dev, plan.train, dist.world_size()))
        entry = dist.on_main(lambda: cache.get(key, plan.train.lora))
        if entry is None:
            return key, None
        dist.on_main(lambda: cache.copy_to(entry, sdir))  # a failure raises on every rank, not only main
        st = dist.on_main(lambda: read_json(StageDir(sdir).stage_json)) or {}
        _say(f"{plan.name}: trained before with the same weights, items and settings; taken from {entry}")
        return key, {"n_replay": st.get("n_replay", 0), "best_epoch": st.get("best_epoch"),
                     "dev_accuracy": st.get("dev_accuracy"), "wall_s": round(time.perf_counter() - t0, 2),
                     "stage_cache": "hit"}

    def finish(self, lm: LoadedModel, data: RunData, history: list[dict[str, str]],
               stage_records: list[dict[str, Any]], base_train: Any, base_test: Any) -> dict[str, Any]:
        from gradual.evaluate import evaluate_items
        from gradual.summary import build_summary

        eval_path = self.rd.eval_json
        ev = dist.on_main(lambda: read_json(eval_path))
        if ev is None:
            t_eval = time.perf_counter()
            res = evaluate_items(lm, data.test, base_test.categories(), chat=self.cfg.train.chat,
                                 progress=self.progress)
            from gradual.atomic import write_jsonl

            ev = {"accuracy": res.accuracy, "n": res.n, "by_category": res.by_category,
                  "hallucination_rate": res.hallucination_rate, "wall_s": round(time.perf_counter() - t_eval, 3)}
            if dist.is_main():
                write_jsonl(self.rd.eval_predictions, res.predictions)
                write_json(eval_path, ev)
        summary = build_summary(
            strategy=self.cfg.strategy, model=self.cfg.model,
            fingerprint=(base_train.summary.get("model") or {}).get("fingerprint"), seed=self.cfg.seed,
            data=data.source, stages=stage_records, history=history, test_eval=ev,
            noise=base_train.summary.get("noise") or {}, wall=self._wall(history, stage_records, ev))
        if dist.is_main():
            write_json(self.rd.summary, summary)
        return summary

    def _wall(self, history: list[dict[str, str]], stage_records: list[dict[str, Any]],
              ev: Mapping[str, Any]) -> dict[str, Any]:
        """wall_s: the sum over every step of the run (probes, stages, test eval), read from each step's
        own record, so a resumed run counts the steps earlier processes finished; process_wall_s: this
        process alone (model loading included)."""
        from gradual.probe.result import summary_path

        probes = [train_probe_name(0), "base_test"] + [train_probe_name(k) for k in range(1, len(history))]
        steps: dict[str, float] = {}
        for name in probes:
            path = summary_path(self.rd.probe(name))
            if path.exists():
                steps[f"probe {name}"] = float(json.loads(path.read_text(encoding="utf-8")).get("wall_s") or 0.0)
        for rec in stage_records:
            steps[f"stage{rec['stage']}"] = float(rec.get("wall_s") or 0.0)
        steps["eval test"] = float(ev.get("wall_s") or 0.0)
        return {"wall_s": round(sum(steps.values()), 1), "steps_wall_s": {k: round(v, 1) for k, v in steps.items()},
                "process_wall_s": round(time.time() - self.t0, 1)}


def _composition(items: Sequence[Item], cats: Mapping[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        c = cats.get(it.id, "?")
        out[c] = out.get(c, 0) + 1
    return out


def _say(msg: str) -> None:
    if not dist.is_main():  # one voice under a multi-process launch
        return
    from rich.console import Console

    Console(stderr=True).print(f"[cyan]gradual[/] {msg}", highlight=False)


def run_pipeline(cfg: RunConfig, out_dir: Path, *, resume: bool = True, progress: bool = True,
                 command: str = "", stage_cache: Path | None = None) -> dict[str, Any]:
    """Run (or resume, or just return) one run of `cfg` in `out_dir`; returns summary.json's content.
    `stage_cache` (compare's OUT/stage-cache) serves stages other runs already trained identically."""
    from gradual.strategies import check_strategies

    check_strategies([cfg.strategy], "--strategy")
    out_dir = Path(out_dir)
    check_model_spec(cfg.model)
    from gradual.lm.backends import backend_errors

    errors = backend_errors(cfg.probe.backend, cfg.probe.estimator, cfg.probe.top_k)
    if errors:  # e.g. --backend vllm without vLLM: now, not after the model has loaded
        # The engine's messages name flags; a run's config names keys.
        raise UserError("; ".join(e.replace("--backend", "probe.backend").replace("--top-k", "probe.top_k")
                                  for e in errors))
    from gradual.runlock import folder_lock

    # Locked before the folder's state is read: two runs on one folder never both start.
    with folder_lock(out_dir):
        return _run_locked(cfg, out_dir, resume=resume, progress=progress, command=command, stage_cache=stage_cache)


def _run_locked(cfg: RunConfig, out_dir: Path, *, resume: bool, progress: bool, command: str,
                stage_cache: Path | None = None) -> dict[str, Any]:
    _check_run_dir(out_dir, cfg, resume)
    rd = RunDir(out_dir)
    finished = read_json(rd.summary) if resume else None
    if isinstance(finished, dict):
        if dist.is_main() and not rd.report.exists():  # killed between summary and report
            from gradual.report import write_report

            write_report(out_dir)
        dist.barrier()
        return finished
    data = check_run_data(cfg)
    if dist.is_main():  # the model is needed: a cold cache converts it while the imports below run
        from gradual.lm.load import start_embedded_conversion

        start_embedded_conversion(cfg.model)
    # Under a launcher: every rank has read the folder's state (the checks above) before main changes it.
    dist.setup(cfg.device)
    dist.barrier()
    summary = Pipeline(cfg, out_dir, progress=progress and dist.is_main(), command=command,
                       stage_cache=stage_cache).run(data)
    if dist.is_main():
        from gradual.report import write_report

        write_report(out_dir)
    dist.barrier()  # the run folder is complete when any rank returns
    return summary
