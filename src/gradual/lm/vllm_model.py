"""What the vllm backend serves, and how its engine is built (gradual.lm.backends registers it).

Run as: `gradual probe --backend vllm ...`, `gradual eval --backend vllm ...` (config key probe.backend);
        from Python: `engine = make_engine("vllm", vllm_model("./my-model"), max_new_tokens=12, top_k=40)`.

vLLM is an optional extra (`pip install 'gradual[vllm]'`): it is imported only when the vllm backend
is used, and its absence is a user error (exit 2) raised before any model loads.

The vllm backend serves a VLLMModel (a weights folder, its tokenizer and fingerprint, optionally one
LoRA adapter sent as a LoRARequest) built by `vllm_model(spec, adapter)`; an in-memory LoadedModel
(`gradual run` hands the probe merged weights) is first saved to a folder keyed by its fingerprint.
See gradual.lm.vllm for what each request asks vLLM and where LoRA requests apply.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from gradual.errors import UserError

NOT_INSTALLED = "--backend vllm: vLLM is not installed (pip install 'gradual[vllm]')"
# max_lora_rank values vLLM accepts; an adapter's rank is rounded up to the next one.
_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


# -- availability ----------------------------------------------------------------------------------

def vllm_available() -> bool:
    """Whether `import vllm` would succeed, without paying for the import (several seconds)."""
    if "vllm" in sys.modules:  # a test's stand-in, or vLLM already imported; None marks a failed import
        return sys.modules["vllm"] is not None
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def import_vllm() -> Any:
    if not vllm_available():
        raise UserError(NOT_INSTALLED)
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:  # installed but broken (e.g. a CUDA/torch mismatch): say so, once
        raise UserError(f"--backend vllm: vLLM is installed but does not import ({exc})") from None


def vllm_version() -> str:
    """The installed vLLM's version (for cache keys and summaries), without importing it when possible."""
    mod = sys.modules.get("vllm")
    version = getattr(mod, "__version__", None) if mod is not None else None
    if version is None:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        try:
            version = dist_version("vllm")
        except PackageNotFoundError:
            raise UserError(NOT_INSTALLED) from None
    return str(version)


# -- what the vllm backend serves ------------------------------------------------------------------

@dataclass(frozen=True)
class VLLMPlacement:
    """Where vLLM runs the model; `dtype` is vLLM's own setting ("auto": from the model config)."""

    device: torch.device
    dtype: str
    reason: str


@dataclass
class VLLMModel:
    """A model for the vllm backend: duck-types the LoadedModel fields probe() and eval read
    (spec, tokenizer, fingerprint, placement) without loading the weights into this process."""

    spec: str
    path: str  # the weights folder (or hub id) vLLM loads
    tokenizer: Any
    fingerprint: str  # of the weights files, plus the adapter's files when one is served
    placement: VLLMPlacement
    lora: str | None = None  # a LoRA adapter folder sent as a LoRARequest with every request
    lora_rank: int = 0


_DTYPES = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _hash_files(paths: list[Path], h: Any, whole: bool) -> None:
    for p in sorted(paths):
        size = p.stat().st_size
        h.update(f"{p.name}\x00{size}\x00".encode())
        with p.open("rb") as f:
            if whole or size <= 1 << 20:
                h.update(f.read())
                continue
            # Large weight files: the head (safetensors' header names every tensor, shape and offset) and
            # 64 strided 4 KiB windows: any fine-tune changes every window's bytes, at milliseconds of I/O.
            h.update(f.read(1 << 16))
            for i in range(64):
                f.seek(size * i // 64)
                h.update(f.read(4096))


def files_fingerprint(path: str, adapter: str | None = None) -> str:
    """A cheap, stable hash of a model folder's config and weights (and an adapter's files)."""
    h = hashlib.sha256()
    p = Path(path)
    if p.is_dir():
        _hash_files([q for q in p.iterdir() if q.suffix in (".json", ".safetensors", ".bin", ".model")], h,
                    whole=False)
    else:  # a hub id vLLM downloads itself: only the name is known here
        h.update(f"hub:{path}".encode())
    if adapter is not None:
        _hash_files([q for q in Path(adapter).iterdir() if q.is_file()], h, whole=True)
    return h.hexdigest()[:16]


def lora_unsupported(adapter: str | Path) -> str | None:
    """Why vLLM cannot serve this adapter as a LoRARequest (None: it can)."""
    cfg = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        return f"peft_type {cfg.get('peft_type')} is not LoRA"
    if cfg.get("use_dora"):
        return "DoRA adapters are not served by vLLM"
    if cfg.get("modules_to_save"):
        return "modules_to_save (fully trained modules) cannot ride on a LoRA request"
    if int(cfg.get("r", 0)) > _VLLM_LORA_RANKS[-1]:
        return f"rank {cfg.get('r')} exceeds vLLM's maximum {_VLLM_LORA_RANKS[-1]}"
    return None


def _lora_rank(adapter: str | Path) -> int:
    r = int(json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16))
    return next(x for x in _VLLM_LORA_RANKS if x >= r)


def _save_folder(model: Any, tokenizer: Any, key: str) -> str:
    """Save HF weights + tokenizer once under the cache, keyed by fingerprint (atomic rename)."""
    from gradual.lm.load import cache_dir

    out = cache_dir() / "vllm-models" / key
    if (out / "config.json").exists():
        return str(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(out)
    except OSError:  # another process saved it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _merged_folder(base: str, adapter: str, tokenizer: Any, key: str) -> str:
    """The base weights with `adapter` merged in, saved as a folder vLLM can load."""
    from transformers import AutoModelForCausalLM

    from gradual.lm.load import merge_adapter

    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")  # merged on CPU: vLLM owns the GPU
    merged = merge_adapter(model, adapter, model.dtype)
    return _save_folder(merged, tokenizer, key)


def _placement(dtype: str, why: str) -> VLLMPlacement:
    if dtype not in _DTYPES:
        raise UserError(f"--dtype: unknown dtype {dtype!r} (use auto, fp32, bf16 or fp16)")
    return VLLMPlacement(torch.device("cuda"), _DTYPES[dtype], f"vLLM on cuda, dtype {_DTYPES[dtype]} ({why})")


def vllm_model(spec: str, adapter: str | Path | None = None, dtype: str | None = "auto") -> VLLMModel:
    """A model spec (plus an optional PEFT adapter) for the vllm backend; loads only the tokenizer.

    The adapter rides on a LoRARequest when vLLM can serve it (lora_unsupported), else it is merged
    into a saved copy of the weights."""
    from gradual.lm.load import check_adapter, load_tokenizer, resolve_spec

    path, kw = resolve_spec(spec)
    if "gguf_file" in kw:
        raise UserError(f"--model: {spec}: a .gguf file is not served by the vllm backend; give a Hugging Face "
                        "model folder (the embedded smollm2-135m is converted to one) or use --backend hf")
    tok = load_tokenizer(path)
    placement = _placement(dtype or "auto", "dtype auto: the model config's" if (dtype or "auto") == "auto"
                           else "--dtype")
    if adapter is None:
        return VLLMModel(spec, path, tok, files_fingerprint(path), placement)
    adapter = str(adapter)
    check_adapter(adapter)
    fp = files_fingerprint(path, adapter)
    why = lora_unsupported(adapter)
    if why is None:
        return VLLMModel(spec, path, tok, fp, placement, lora=adapter, lora_rank=_lora_rank(adapter))
    return VLLMModel(spec, _merged_folder(path, adapter, tok, fp), tok, fp,
                     _placement(dtype or "auto", f"adapter merged: {why}"))


def from_loaded(lm: Any, dtype: str = "auto") -> VLLMModel:
    """An in-memory model (LoadedModel, e.g. a run's merged stages) as a folder vLLM can load."""
    model = lm.model
    if hasattr(model, "merge_and_unload"):  # a PEFT wrapper: save plain weights
        model = model.merge_and_unload()
    fp = lm.fingerprint
    return VLLMModel(lm.spec, _save_folder(model, lm.tokenizer, fp), lm.tokenizer, fp,
                     _placement(dtype, "weights saved from memory"))


# -- building engines --------------------------------------------------------------------------------

# One LLM per process: vLLM reserves most of the GPU's memory, so a second model replaces the first.
_LLM: dict[str, Any] = {}


def build_llm(vllm: Any, model: VLLMModel, *, max_logprobs: int, seed: int) -> Any:
    """The (cached) vllm.LLM for `model`: prefix caching on, LoRA enabled when an adapter rides along."""
    kwargs: dict[str, Any] = {"model": model.path, "tokenizer": model.path, "dtype": model.placement.dtype,
                              "enable_prefix_caching": True, "max_logprobs": max_logprobs, "seed": seed}
    if model.lora is not None:
        kwargs.update(enable_lora=True, max_lora_rank=model.lora_rank, max_loras=1)
    key = json.dumps(kwargs, sort_keys=True)
    if key not in _LLM:
        if _LLM:
            _LLM.clear()  # drop the previous engine before the next one asks for the GPU's memory
            import gc

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        _LLM[key] = vllm.LLM(**kwargs)
    return _LLM[key]


def _stop_ok_ids(path: str, tokenizer: Any) -> set[int]:
    """STOP_OK token ids for a model folder, from the HF engine's own helper (eos from the model's configs)."""
    from gradual.lm.stops import stop_sets

    cfgs = SimpleNamespace(config=None, generation_config=None)
    try:
        from transformers import AutoConfig, GenerationConfig

        cfgs.config = AutoConfig.from_pretrained(path)
        try:
            cfgs.generation_config = GenerationConfig.from_pretrained(path)
        except OSError:  # many models ship no generation_config.json
            pass
    except (OSError, ValueError):
        pass
    vocab = max(len(tokenizer), int(getattr(cfgs.config, "vocab_size", 0) or 0))
    _, ok = stop_sets(tokenizer, cfgs, vocab, torch.device("cpu"))
    return {int(i) for i in ok.nonzero().flatten().tolist()}


def vllm_engine(lm: Any, *, max_new_tokens: int = 12, top_k: int = 0, seed: int = 0) -> Any:
    """The VLLMEngine over `lm` (a VLLMModel, or an in-memory LoadedModel saved for vLLM first)."""
    vllm = import_vllm()
    model = lm if isinstance(lm, VLLMModel) else from_loaded(lm)
    from gradual.lm.vllm import VLLMEngine

    llm = build_llm(vllm, model, max_logprobs=max(20, top_k), seed=seed)
    lora_request = None
    if model.lora is not None:
        from vllm.lora.request import LoRARequest

        # The int id names the adapter inside vLLM; one adapter per engine, so 1.
        lora_request = LoRARequest(f"gradual-{Path(model.lora).parent.name or 'adapter'}", 1, model.lora)
    newline = model.tokenizer("\n", add_special_tokens=False)["input_ids"]
    return VLLMEngine(llm, vllm, model.tokenizer, stop_ok=_stop_ok_ids(model.path, model.tokenizer),
                      newline_id=newline[-1], max_new_tokens=max_new_tokens, lora_request=lora_request)
