"""probe(): the SliCK categorization of a list of items by one model, with cache, noise control and progress.

Run as: `gradual probe --model smollm2-135m --data data/world/train.jsonl --exemplars data/world/dev.jsonl`
        or from Python: `from gradual.probe import probe; result = probe(lm, items, exemplars, ProbeConfig())`

One "pass" probes every item once with one exemplar seed: each item gets `nex` exemplar sets
(gradual.probe.slick), and per set one greedy answer plus, depending on the estimator, `samples`
sampled answers (sample) or the exact probability of a correct answer at T>0 (exact). The work is
grouped by exemplar set so the engine reuses each set's prefix KV cache across a batch of questions.
Early exit (the default; `full` turns it off): prompts go slot by slot and an item stops as soon as
its category is settled, with the categories `full` gives (RULES_EARLY_EXIT says what the row's
numbers then mean). Measured on the world train split, this skips about half the model's tokens.
`repeat` R adds R passes with seeds seed+1 .. seed+R; the summary's "noise" section reports how often
an item's category changes between the main pass and each repeat (chance flips, PAPER.md §2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from gradual.answers import PUNCTUATION, SCORER_VERSION, answer_stop, extract_answer, is_correct
from gradual import distributed as dist
from gradual.config import ESTIMATORS, PROBE_FORMATS, ProbeConfig
from gradual.data.items import Item
from gradual.errors import UserError
import gradual.probe.cache as pcache
from gradual.probe.result import ProbeResult, ProbeRow, build_summary
from gradual.progress import Bars
from gradual.lm.backends import backend_errors, backend_identity, get_backend, make_engine
from gradual.lm.protocol import ProbeEngine
from gradual.probe.slick import (Assignment, assign_exemplar_sets, categorize, maybe_known_settled,
                                 p_seen_from_prompts, sample_evidence_settled)
from gradual.prompts import STOP, answer_continuation, exemplar, probe_prefix, query

RULES = {
    "sample": "HighlyKnown: p_greedy = 1; MaybeKnown: 0 < p_greedy < 1; WeaklyKnown: p_greedy = 0 and "
              "p_sample > 0 (p_sample = share of the sampled answers that are correct); Unknown: otherwise.",
    "exact": "HighlyKnown: p_greedy = 1; MaybeKnown: 0 < p_greedy < 1; WeaklyKnown: p_greedy = 0 and "
             "p_seen >= 0.5, where p_seen = 1 - prod_i (1 - p_i)^samples and p_i is the exact probability "
             "(temperature, top-k, canonical tokenizations of every accepted answer followed by a stop) "
             "that prompt i yields a correct answer; p_sample = mean p_i; Unknown: otherwise.",
}
# What the row's numbers mean when prompts stop as soon as the category is settled (the default; --full
# computes every prompt). The categories are those of --full: only evidence that cannot change them is skipped
# (exactly so in fp32; in bf16 other batches give a row slightly other logits, see gradual.lm.hf).
RULES_EARLY_EXIT = (
    "Prompts are used in order until the category is settled: an item is MaybeKnown at its first pair of "
    "one right and one wrong greedy answer; HighlyKnown and all-wrong items use all nex prompts. Samples "
    "(sample) or p_i (exact) are computed only for prompts whose greedy answer, and every earlier one, is "
    "wrong, and only until a correct sample is seen (sample) or p_seen >= 0.5 (exact). So p_greedy is the "
    "share of correct greedy answers among the n_prompts used; p_sample (sample) is over the n_samples "
    "drawn; p_sample and p_seen (exact) are over the n_scored prompts scored (p_prompts is null for the "
    "others); both are 0 where none were needed. Use --full for estimates over every prompt. A greedy answer "
    "ending in … was cut once it could no longer match any accepted answer (it is wrong either way)."
)
_TRAILING_PUNCT = "".join(sorted(PUNCTUATION))  # for str.rstrip


# ---------------------------------------------------------------------------------------------

def validate_config(cfg: ProbeConfig) -> None:
    """Every bad probe setting in one UserError, named by its flag."""
    errors = []
    if cfg.estimator not in ESTIMATORS:
        errors.append(f"--estimator: {cfg.estimator!r} is not one of {', '.join(ESTIMATORS)}")
    if cfg.format not in PROBE_FORMATS:
        errors.append(f"--format: {cfg.format!r} is not one of {', '.join(PROBE_FORMATS)}")
    from gradual.config import range_errors  # the one table of ranges, shared with run configs

    errors += range_errors(cfg, "probe", flags=True)
    errors += backend_errors(cfg.backend, cfg.estimator, cfg.top_k)
    if errors:
        raise UserError("; ".join(errors))


def accepted_continuations(item: Item) -> list[str]:
    """Every accepted answer as the model would write it after "A:" (stop excluded): each alias, and each
    alias without trailing punctuation (same normalized answer; the model often ends on a ".\\n" token)."""
    out: dict[str, None] = {}
    for a in item.answers:
        for v in (a, a.rstrip(_TRAILING_PUNCT).rstrip()):
            if v:
                out.setdefault(answer_continuation(v)[: -len(STOP)], None)
    return list(out)


def _prompt_key(seed: int, item_id: str, set_key: tuple[str, int]) -> int:
    h = hashlib.sha256(f"{seed}\x00{item_id}\x00{set_key[0]}\x00{set_key[1]}".encode()).digest()
    return int.from_bytes(h[:8], "little")


@dataclass
class _Evidence:
    """What one item's prompts have shown so far in one pass (prompts are used in slot order)."""

    answers: list[str] = field(default_factory=list)  # greedy answer of each prompt used
    right: int = 0  # correct greedy answers among them
    p: list[float | None] = field(default_factory=list)  # exact: p_i per prompt used (None: not scored)
    n_samples: int = 0  # sample: sampled answers drawn
    n_sample_correct: int = 0

    @property
    def wrong(self) -> int:
        return len(self.answers) - self.right

    def p_seen(self, samples: int) -> float:
        return p_seen_from_prompts([p for p in self.p if p is not None], samples)

    def settled(self, exact: bool, samples: int) -> bool:
        """Whether more samples or scores could still matter (see slick.sample_evidence_settled)."""
        return sample_evidence_settled(self.p_seen(samples) if exact else None, self.n_sample_correct)


def _pass(engine: ProbeEngine, items: Sequence[Item], cfg: ProbeConfig, seed: int, assignment: Assignment,
          advance: Callable[[float], None], only: Sequence[Item] | None = None) -> list[ProbeRow]:
    """Probe every item once with exemplar seed `seed`.

    Prompts go slot by slot (every undecided item's first exemplar set, then its second, ...), so an
    item leaves the work as soon as its category is settled (see RULES_EARLY_EXIT); with cfg.full
    every item uses all nex prompts and every prompt's samples or score, as the paper's protocol does.
    `only`: probe just these items (a process's shard), with the exemplar sets drawn for all `items`.
    """
    if only is not None:  # the sets above are those one process draws, whatever the shard
        items = only
    ev: dict[str, _Evidence] = {it.id: _Evidence() for it in items}
    exact = cfg.estimator == "exact"
    # Under early exit a question is one sequence in the prompt pass and its samples are decoded in a
    # second phase, in chunks the engine sizes; under --full greedy and samples decode together.
    q_per_call = cfg.batch_size if not cfg.full or exact else max(1, cfg.batch_size // (1 + cfg.samples))
    prefixes: dict[tuple[str, int], str] = {}
    for slot in range(cfg.nex):
        active = [it for it in items if cfg.full or not maybe_known_settled(ev[it.id].right, ev[it.id].wrong)]
        if not active:
            break
        # Work in exemplar-set order, so consecutive questions share a prefix, but fill every batch across
        # set boundaries (the engine takes one prefix per row): small relations still get full batches.
        work: list[tuple[tuple[str, int], Item]] = []
        for it in active:
            es = assignment.sets[it.id][slot]
            if es.key not in prefixes:
                prefixes[es.key] = probe_prefix(es.items)
            work.append((es.key, it))
        work.sort(key=lambda w: (w[0], len(w[1].question), w[1].id))  # similar lengths share little padding
        for start in range(0, len(work), q_per_call):
            chunk = work[start: start + q_per_call]
            right = [False] * len(chunk)

            def select(greedy: list[str], chunk: list[tuple[tuple[str, int], Item]] = chunk,
                       right: list[bool] = right) -> list[bool]:
                # Samples or a score of this prompt matter only while every greedy answer so far,
                # this one included, is wrong and the sample half of WeaklyKnown is not yet settled.
                flags = []
                for r, ((_, it), g) in enumerate(zip(chunk, greedy)):
                    right[r] = is_correct(g, it.answers)
                    e = ev[it.id]
                    flags.append(e.right == 0 and not right[r] and not e.settled(exact, cfg.samples))
                return flags

            conts = [accepted_continuations(it) for _, it in chunk]
            out = engine.run(
                [prefixes[key] for key, _ in chunk], [query(it.question) for _, it in chunk], greedy=True,
                samples=0 if exact else cfg.samples,
                sample_keys=None if exact else [_prompt_key(seed, it.id, key) for key, it in chunk],
                continuations=conts if exact else None,
                temperature=cfg.temperature, top_k=cfg.top_k, select=None if cfg.full else select,
                # The greedy answer only matters as right or wrong: the engine may stop one that can no
                # longer be right (it then ends in answers.CUT_MARK); samples are always decoded whole.
                **({"row_stops": [answer_stop(it.answers) for _, it in chunk]}
                   if not cfg.full and engine.stops_rows else {}),
                # The first accepted answer is checked as a draft in the prompt pass: most greedy answers
                # are settled there (right, or wrong at their first token) with no decoding.
                **({"drafts": [c[0] if c else None for c in conts]}
                   if engine.verifies_drafts else {}),
            )
            for r, (_, it) in enumerate(chunk):
                g = (out.greedy or [])[r]
                e = ev[it.id]
                e.answers.append(extract_answer(g))
                e.right += is_correct(g, it.answers) if cfg.full else right[r]
                if exact:
                    e.p.append((out.scores or [])[r])
                else:
                    drawn = (out.samples or [])[r]
                    e.n_samples += len(drawn)
                    e.n_sample_correct += sum(is_correct(x, it.answers) for x in drawn)
            advance(len(chunk) / cfg.nex)
        if not cfg.full:  # the prompts a settled item skips count as done on the progress bar
            advance(sum(cfg.nex - slot - 1 for it in active if maybe_known_settled(ev[it.id].right, ev[it.id].wrong))
                    / cfg.nex)
    return _rows(items, ev, cfg, assignment.fallback)


def _rows(items: Sequence[Item], ev: dict[str, _Evidence], cfg: ProbeConfig, fallback: set[str]) -> list[ProbeRow]:
    """Each item's row from the evidence its prompts gave (SliCK's rule on p_greedy and p_sample/p_seen)."""
    exact = cfg.estimator == "exact"
    rows = []
    for it in items:
        e = ev[it.id]
        n_prompts = len(e.answers)
        p_greedy = e.right / n_prompts
        if exact:
            scored = [p for p in e.p if p is not None]
            p_seen = e.p_seen(cfg.samples)
            p_sample = sum(scored) / len(scored) if scored else 0.0
            cat = categorize(p_greedy, p_sample, p_seen=p_seen)
            rows.append(ProbeRow(it.id, cat, p_greedy, p_sample, e.answers, it.relation, it.question,
                                 list(it.answers), e.right, 0, 0, p_seen,
                                 [None if p is None else round(p, 6) for p in e.p],
                                 it.id in fallback, n_prompts=n_prompts, n_scored=len(scored)))
        else:
            p_sample = e.n_sample_correct / e.n_samples if e.n_samples else 0.0
            cat = categorize(p_greedy, p_sample)
            rows.append(ProbeRow(it.id, cat, p_greedy, p_sample, e.answers, it.relation, it.question,
                                 list(it.answers), e.right, e.n_samples, e.n_sample_correct, None, None,
                                 it.id in fallback, n_prompts=n_prompts))
    return rows


def as_computed(cfg: ProbeConfig) -> ProbeConfig:
    """The settings a probe computes with. zeroshot is SliCK with one prompt of no exemplars: its prompt,
    "" + "Q: <question>\nA:", is the zero-shot fine-tune format (gradual.prompts), so the engine, the
    rules and the cache are those of fewshot with nex 1 and shots 0."""
    return dataclasses.replace(cfg, nex=1, shots=0) if cfg.format == "zeroshot" else cfg


def exemplar_assignments(items: Sequence[Item], pool: Sequence[Item], cfg: ProbeConfig,
                         seeds: Sequence[int]) -> dict[int, Assignment]:
    """Every pass's exemplar sets, by exemplar seed: drawn once, for the context check and the pass."""
    return {seed: assign_exemplar_sets(items, pool, cfg.nex, cfg.shots, seed) for seed in seeds}


def check_prompts_fit(lm: Any, items: Sequence[Item], pool: Sequence[Item], cfg: ProbeConfig,
                      assignments: dict[int, Assignment]) -> None:
    """Refuse (exit 2, naming the item) a probe whose longest prompt, its exemplars + question +
    max_new_tokens, is longer than the model's context, before any forward pass. An exemplar set's
    length is the sum of its exemplars' lengths (the prefix tokenizes the same up to a token at a seam)."""
    from gradual.context import check_fits, context_window, token_lengths

    window = context_window(getattr(lm, "model", None))
    if window is None:
        return
    tok = lm.tokenizer
    shot_len = dict(zip((e.id for e in pool), token_lengths(tok, [exemplar(e.question, e.answer) for e in pool])))
    need = {it.id: n + cfg.max_new_tokens for it, n in zip(items, token_lengths(tok, [query(it.question) for it in items]))}
    longest = dict.fromkeys(need, 0)
    for assignment in assignments.values():
        for ident, sets in assignment.sets.items():
            longest[ident] = max(longest[ident], *(sum(shot_len[e.id] for e in es.items) for es in sets))
    check_fits(((i, need[i] + longest[i]) for i in need), window, "its longest few-shot prompt plus --max-new-tokens",
               "shorten the question or its exemplars, or lower --shots or --max-new-tokens")


def _model_info(lm: Any) -> dict[str, Any]:
    pl = lm.placement
    return {"spec": lm.spec, "fingerprint": lm.fingerprint, "device": str(pl.device),
            "dtype": str(pl.dtype).removeprefix("torch.")}


def probe(lm: Any, items: list[Item], exemplars: list[Item] | None, config: ProbeConfig, *,
          progress: bool = True, cache_dir: Path | None = None, desc: str = "probe",
          engine: ProbeEngine | None = None) -> ProbeResult:
    """Categorize `items` (SliCK) with model `lm`; see the module docstring.

    exemplars None: the items themselves are the exemplar pool (never an item's own exemplar).
    Passes are cached under `cache_dir` (default gradual.lm.load.cache_dir()/"probe") when config.cache;
    an entry is served only when it proves itself, and the summary's "cache" field says what the cache
    did (see gradual.probe.cache). A folder that cannot take entries costs one warning, not the probe.
    `engine` overrides the default HFEngine (e.g. another backend), keyed by the same cache.
    """
    from gradual.lm.load import cache_dir as default_cache_dir

    validate_config(config)
    if not items:
        raise UserError("--data: no items to probe")
    config = as_computed(config)  # the summary records what was computed (zeroshot: nex 1, shots 0)
    dist.check_shardable(len(items), "--data")
    if not get_backend(config.backend).shards_items:
        dist.refuse(f"--backend {config.backend}", "the engine manages its GPUs itself; items are sharded for the hf backend")
    t0 = time.perf_counter()
    pool = list(exemplars) if exemplars is not None else list(items)
    seeds = [config.seed + r for r in range(config.repeat + 1)]
    assignments = exemplar_assignments(items, pool, config, seeds)
    check_prompts_fit(lm, items, pool, config, assignments)
    model = _model_info(lm)
    backend = backend_identity(config.backend)  # backends differ in sampler and kernels: never share a cache entry
    # The config's part is its result-changing fields (their metadata "key": gradual.config), the backend
    # by its identity; the seed is each pass's own.
    base_key = {**config.result_fields(), "backend": backend,
        "fingerprint": model["fingerprint"], "device": lm.placement.device.type, "dtype": model["dtype"],
        "items": pcache.items_hash(items), "exemplars": ("self" if exemplars is None else "file") + ":" +
        pcache.items_hash(pool), "scorer": SCORER_VERSION,
    }
    cdir = (cache_dir or default_cache_dir() / "probe") if config.cache else None
    passes: list[list[ProbeRow]] = []
    cached, tokens, compute_s = 0, 0, 0.0
    states: list[str] = []  # per pass: what the cache did (gradual.probe.cache docstring)
    writable = True  # until a write fails: then one warning, and no more writes
    ids = [it.id for it in items]
    with Bars(progress and dist.is_main()) as bar:
        for r, seed in enumerate(seeds):
            key = pcache.entry_key({**base_key, "seed": seed})
            # The main process reads the cache and hands the entry to every rank: all take the same
            # branch even where ranks on other nodes have their own (or no) cache folder.
            found = dist.on_main(lambda key=key: pcache.load_entry(cdir, key, ids, ProbeRow.from_dict)
                                 if cdir is not None else None)
            if found is not None and found.hit:
                passes.append(found.rows or [])  # a hit always has its rows
                states.append(pcache.HIT)
                cached += 1
                continue
            if engine is None:
                engine = make_engine(config.backend, lm, batch_size=config.batch_size,
                                     max_new_tokens=config.max_new_tokens, top_k=config.top_k, seed=config.seed)
            label = desc if r == 0 else f"{desc} (repeat {r}/{config.repeat})"
            rows, n_tokens, seconds = _sharded_pass(engine, items, config, seed, assignments[seed],
                                                    bar.task(label, len(items)))
            compute_s += seconds
            tokens += n_tokens
            state = pcache.OFF if found is None else found.describe()
            if cdir is not None and dist.is_main() and writable:
                writable = _save_entry(cdir, key, rows)
            if cdir is not None and dist.is_main() and not writable:
                state = pcache.UNWRITABLE
            states.append(state)
            passes.append(rows)
    main = passes[0]
    for r, rows in enumerate(passes[1:]):
        for m, x in zip(main, rows):
            m.repeat_categories.append(x.category)
    wall = time.perf_counter() - t0
    summary = build_summary(main, passes, seeds, config, model, exemplars is None, len(pool), wall, compute_s,
                            cached, tokens, pcache.summary_state(states),
                            rule=RULES[config.estimator] + ("" if config.full else " " + RULES_EARLY_EXIT))
    summary["backend"] = backend
    return ProbeResult(main, summary)


def _sharded_pass(engine: ProbeEngine, items: list[Item], cfg: ProbeConfig, seed: int, assignment: Assignment,
                  advance: Callable[[float], None]) -> tuple[list[ProbeRow], int, float]:
    """One pass over this process's shard of `items`; (every rank's rows in item order, the tokens all
    ranks ran, the seconds of the slowest rank). The main rank's shard stands for the whole pass on the bar."""
    t1 = time.perf_counter()
    before = engine.tokens_processed if hasattr(engine, "tokens_processed") else 0
    mine = dist.shard(items)  # this process's items (all of them in one process)
    rows = _pass(engine, items, cfg, seed, assignment, lambda n, k=len(items) / len(mine): advance(n * k), only=mine)
    rows = dist.gather(rows)
    after = engine.tokens_processed if hasattr(engine, "tokens_processed") else 0
    done = dist.all_gather((after - before, time.perf_counter() - t1))
    return rows, sum(t for t, _ in done), max(s for _, s in done)


def _save_entry(cdir: Path, key: str, rows: list[ProbeRow]) -> bool:
    """Cache a computed pass; False (after one warning) when the folder cannot take it: read-only, full,
    or not a folder. The rows are good either way."""
    try:
        pcache.save_entry(cdir, key, [row.to_dict() for row in rows])
        return True
    except OSError as exc:
        pcache.warn_unwritable(cdir, exc)
        return False
