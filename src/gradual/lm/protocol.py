"""The narrow interface every probe backend implements (HF, vLLM): see gradual.lm.hf's module
docstring for what greedy / sample / score return.

Run as: imported by the probe (gradual.probe.run) and by each backend; no command of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

Prefixes = str | Sequence[str]  # one prefix shared by every suffix, or one prefix per suffix
# Called with the greedy answers once decoded; says per suffix whether it still needs its samples and
# its score (the probe's early exit: evidence that cannot change the category is never computed).
Select = Callable[[list[str]], Sequence[bool]]
# Called with a greedy row's text so far; None to go on, or the text to end the row with. The caller's
# rule (gradual.answers.answer_stop: "can no longer be right"), so the engine knows nothing of answers.
RowStop = Callable[[str], "str | None"]


@dataclass
class RunOutput:
    greedy: list[str] | None = None  # per suffix
    samples: list[list[str]] | None = None  # per suffix, n texts ([] where `select` said no)
    scores: list[float | None] | None = None  # per suffix (None where `select` said no)
    tokens_processed: int = 0  # tokens actually run through the model (for the efficiency figure)


class ProbeEngine(Protocol):
    """The narrow interface the SliCK logic uses (see the module docstring).

    Capabilities are fields, read as such: `stops_rows` (run() takes `row_stops`) and `verifies_drafts`
    (run() takes `drafts`, checked in the prompt pass); an engine without them keeps the narrow call."""

    stops_rows: bool
    verifies_drafts: bool

    def run(
        self, prefix: Prefixes, suffixes: Sequence[str], *, greedy: bool = True, samples: int = 0,
        sample_keys: Sequence[int] | None = None, continuations: Sequence[Sequence[str]] | None = None,
        temperature: float = 1.0, top_k: int = 0, select: Select | None = None,
    ) -> RunOutput: ...

    def greedy(self, prefix: Prefixes, suffixes: Sequence[str]) -> list[str]: ...

    def sample(self, prefix: Prefixes, suffixes: Sequence[str], n: int, temperature: float, top_k: int,
               sample_keys: Sequence[int] | None = None) -> list[list[str]]: ...

    def score(self, prefix: Prefixes, suffixes: Sequence[str], continuations: Sequence[Sequence[str]],
              temperature: float, top_k: int) -> list[float]: ...


class RunParts:
    """greedy / sample / score as calls of a backend's `run`: every backend inherits them, so the three
    parts mean the same on each (a backend only writes `run`)."""

    stops_rows: bool = False  # see ProbeEngine
    verifies_drafts: bool = False

    def run(self, prefix: Prefixes, suffixes: Sequence[str], **kw: object) -> RunOutput:
        raise NotImplementedError  # each backend defines it

    def greedy(self, prefix: Prefixes, suffixes: Sequence[str]) -> list[str]:
        return self.run(prefix, suffixes, greedy=True).greedy or []

    def sample(self, prefix: Prefixes, suffixes: Sequence[str], n: int, temperature: float, top_k: int,
               sample_keys: Sequence[int] | None = None) -> list[list[str]]:
        return self.run(prefix, suffixes, greedy=False, samples=n, sample_keys=sample_keys,
                        temperature=temperature, top_k=top_k).samples or []

    def score(self, prefix: Prefixes, suffixes: Sequence[str], continuations: Sequence[Sequence[str]],
              temperature: float, top_k: int) -> list[float]:
        return self.run(prefix, suffixes, greedy=False, continuations=continuations,
                        temperature=temperature, top_k=top_k).scores or []
