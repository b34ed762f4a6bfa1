"""The knowledge probe: SliCK categories (HighlyKnown / MaybeKnown / WeaklyKnown / Unknown) for QA items.

Run as: `gradual probe --model SPEC --data FILE --out OUT.jsonl`, or from Python:

    from gradual.probe import probe, save_probe
    result = probe(lm, items, exemplars, ProbeConfig(estimator="exact"))
    save_probe(result, Path("probe.jsonl"))

slick.py holds the rule table and exemplar sets, engine.py the model interface and its fast Hugging
Face implementation, cache.py the on-disk cache, run.py the orchestration.
"""

from gradual.probe.result import ProbeResult, ProbeRow, load_probe, save_probe, summary_path
from gradual.probe.run import probe
from gradual.probe.slick import CATEGORIES, categorize

__all__ = ["CATEGORIES", "ProbeResult", "ProbeRow", "categorize", "load_probe", "probe", "save_probe",
           "summary_path"]
