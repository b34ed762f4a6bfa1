"""The model layer: load a model spec (and the adapters of a run's stages), and run it.

Run as: used by gradual.probe (SliCK), gradual.evaluate and gradual.train; nothing here knows about
categories, items or runs (an engine stops a row through its caller's callback, gradual.answers).

  spec.py        model specs (the embedded default, a folder, a .gguf, a hub id) and their errors
  load.py        load a spec on a device and dtype, merge adapters (the one place), fingerprints, cache folder
  protocol.py    the engine protocol every backend keeps (run: greedy, sample, score) and its types
  backends.py    the registry of engines by name ("hf", "vllm"), each imported only when used
  hf.py          the Hugging Face engine (CPU or GPU): prefix KV reuse, length buckets, prompt pass
  decode.py      its decode loop and exact scores; drafts.py its speculative draft check
  stops.py       which tokens end an answer; sampling.py counter-based sampling and tempered top-k
  kernels.py     CPU attention as grouped matmuls, preallocated KV caches
  vllm.py        the vLLM engine (GPU); vllm_model.py what it serves and how its LLM is built
  onednn_head.py the LM head on oneDNN for fp32 CPUs
"""
