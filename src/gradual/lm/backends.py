"""The engines a probe or an eval can run on, by name: `hf` (gradual.lm.hf, CPU or GPU) and `vllm`
(gradual.lm.vllm, GPU), each imported only when used.

Run as: `gradual probe --backend vllm ...`, `gradual eval --backend vllm ...` (config key probe.backend);
        from Python: `engine = make_engine("hf", load_model("smollm2-135m"), max_new_tokens=12)`.

Callers ask a backend what it can do (its fields) instead of testing its name. Its identity
({"name", "version"}: transformers' version for hf, vLLM's for vllm) goes into every probe cache key
and probe summary: the backends draw samples with different generators and compute in different
kernels, so a cached hf probe must never answer a vllm one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gradual.errors import UserError


@dataclass(frozen=True)
class Backend:
    name: str
    # The engine loads the weights itself (vllm): this process loads only the tokenizer, and a run's
    # rebuilt weights are handed over as a saved folder.
    loads_weights: bool
    # Under a multi-process launch, items are split across the processes (hf); an engine that manages
    # its GPUs itself is refused there.
    shards_items: bool
    problems: Callable[[str, int], list[str]]  # (estimator, top_k) -> flag-named messages
    version: Callable[[], str]
    load: Callable[[str, "str | Path | None", "str | None", "str | None"], Any]  # (spec, adapter, device, dtype)
    engine: Callable[..., Any]  # (model, batch_size, max_new_tokens, top_k, seed) -> a ProbeEngine


# -- hf -------------------------------------------------------------------------------------------

def _hf_version() -> str:
    import transformers

    return str(transformers.__version__)


def _hf_load(spec: str, adapter: str | Path | None, device: str | None, dtype: str | None) -> Any:
    from gradual.lm.load import load_with_adapters

    return load_with_adapters(spec, [adapter] if adapter is not None else [], device, dtype)


def _hf_engine(lm: Any, *, batch_size: int = 64, max_new_tokens: int = 12, top_k: int = 0, seed: int = 0) -> Any:
    if not hasattr(lm, "model"):
        raise UserError("--backend hf: needs a model loaded with gradual.lm.load.load_model")
    from gradual.lm.hf import HFEngine

    return HFEngine(lm.model, lm.tokenizer, batch_size=batch_size, max_new_tokens=max_new_tokens)


# -- vllm -----------------------------------------------------------------------------------------

def _vllm_problems(estimator: str, top_k: int) -> list[str]:
    from gradual.lm.vllm_model import NOT_INSTALLED, vllm_available

    errors = [] if vllm_available() else [NOT_INSTALLED]
    if estimator == "exact" and top_k <= 0:
        errors.append("--top-k: 0 (whole vocabulary) cannot be scored by the vLLM backend: its "
                      "prompt_logprobs return the top k tokens only; use --top-k >= 1 or --backend hf")
    return errors


def _vllm_version() -> str:
    from gradual.lm.vllm_model import vllm_version

    return vllm_version()


def _vllm_load(spec: str, adapter: str | Path | None, device: str | None, dtype: str | None) -> Any:
    from gradual.lm.vllm_model import vllm_model

    return vllm_model(spec, adapter=adapter, dtype=dtype)  # vLLM picks its GPU: device does not apply


def _vllm_engine(lm: Any, *, batch_size: int = 64, max_new_tokens: int = 12, top_k: int = 0, seed: int = 0) -> Any:
    from gradual.lm.vllm_model import vllm_engine

    return vllm_engine(lm, max_new_tokens=max_new_tokens, top_k=top_k, seed=seed)  # vLLM batches itself


REGISTRY: dict[str, Backend] = {
    "hf": Backend("hf", loads_weights=False, shards_items=True, problems=lambda estimator, top_k: [],
                  version=_hf_version, load=_hf_load, engine=_hf_engine),
    "vllm": Backend("vllm", loads_weights=True, shards_items=False, problems=_vllm_problems,
                    version=_vllm_version, load=_vllm_load, engine=_vllm_engine),
}
BACKENDS: tuple[str, ...] = tuple(REGISTRY)


def get_backend(name: str) -> Backend:
    """The registered backend `name`, or a UserError naming the ones there are."""
    if name not in REGISTRY:
        raise UserError(f"--backend: unknown backend {name!r}; available: {', '.join(BACKENDS)}")
    return REGISTRY[name]


def backend_errors(backend: str, estimator: str, top_k: int) -> list[str]:
    """Everything wrong with a backend choice, as flag-named messages (checked before any model loads)."""
    if backend not in REGISTRY:
        return [f"--backend: {backend!r} is not one of {', '.join(BACKENDS)}"]
    return REGISTRY[backend].problems(estimator, top_k)


def backend_identity(backend: str) -> dict[str, str]:
    """{"name", "version"} of a backend, for cache keys and summaries."""
    return {"name": backend, "version": get_backend(backend).version()}


def make_engine(backend: str, lm: Any, *, batch_size: int = 64, max_new_tokens: int = 12, top_k: int = 0,
                seed: int = 0) -> Any:
    """The ProbeEngine for `backend` over `lm` (a LoadedModel, or a VLLMModel for vllm)."""
    return get_backend(backend).engine(lm, batch_size=batch_size, max_new_tokens=max_new_tokens, top_k=top_k,
                                       seed=seed)
