"""Run configs from YAML files and flags: load, apply overrides, validate every field at once.

Run as: `gradual run --config configs/default.yaml` (flags override YAML values); gradual.compare
builds one config per run the same way.

The fields, their defaults and the table of ranges are gradual.config's; this module reads a user's
YAML strictly (a key given twice, an empty file and a non-mapping are errors naming the file and
line), applies dotted overrides, and reports every bad key, value, range or strategy name in one
UserError, before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gradual.config import RunConfig, _build, range_errors
from gradual.errors import UserError, where
from gradual.strategies import strategy_errors


def _ranges(cfg: RunConfig, errors: list[str]) -> None:
    errors.extend(range_errors(cfg, ""))
    for section in ("probe", "train", "stage2"):
        errors.extend(range_errors(getattr(cfg, section), section))


def _known_strategy(cfg: RunConfig, errors: list[str]) -> None:
    if isinstance(cfg.strategy, str):
        errors.extend(strategy_errors([cfg.strategy], "strategy"))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """data[a][b] = value for "a.b". A section that is not a mapping (`probe: 3`) is left as it is,
    for validation to report."""
    cur = data
    *parents, last = dotted.split(".")
    for part in parents:
        cur = cur.setdefault(part, {})
        if not isinstance(cur, dict):
            return
    cur[last] = value


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"duplicate key {key!r} (lines {first} and {second})")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by design
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it below
                continue
            if first is not None:
                raise _DuplicateKey(key, first, line)
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(path: str | Path, empty: str = "empty file (expected a YAML mapping)") -> dict[str, Any]:
    """A user's YAML file as a mapping. A missing file, a folder, non-UTF-8 bytes, invalid YAML, a key
    given twice, a top level that is not a mapping, and (with the `empty` message) a file with no
    content are UserErrors naming the file (and line)."""
    from gradual.data.items import read_user_text  # the one reader of user text files

    p = Path(path)
    text = read_user_text(p, allow_empty=True)
    try:
        loaded = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as exc:
        raise UserError(f"{p}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = where(p, mark.line + 1) if mark is not None else str(p)
        raise UserError(f"{loc}: invalid YAML ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: invalid YAML ({exc})") from None
    if loaded is None:
        raise UserError(f"{p}: {empty}")
    if not isinstance(loaded, dict):
        raise UserError(f"{p}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def load_run_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML run config, apply dotted-key overrides (from flags), validate everything at once."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise UserError(f"--config: {p}: no such file")
        data = load_yaml_mapping(p, "empty config; write at least model: and data: (see configs/default.yaml)")
    for key, val in (overrides or {}).items():
        if val is not None:
            set_dotted(data, key, val)
    return config_from_mapping(data, str(path) if path else "")


def config_from_mapping(data: dict[str, Any], src: str = "") -> RunConfig:
    """A RunConfig from a mapping (a YAML file's, or the `config` a run folder's config.yaml records),
    validated at once; `src` names where it came from in the error."""
    errors: list[str] = []
    cfg = _build(RunConfig, data, "", errors)
    # Range and strategy checks skip values of the wrong type (already reported above), so a config
    # with both kinds of mistakes gets every message in one go.
    _ranges(cfg, errors)
    _known_strategy(cfg, errors)
    if errors:
        raise UserError((f"{src}: " if src else "") + "invalid config:\n  " + "\n  ".join(errors))
    return cfg
