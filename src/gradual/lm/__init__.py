"""The model layer: load a model spec (and the adapters of a run's stages), and run it.

Run as: used by gradual.probe (SliCK), gradual.evaluate and gradual.train; nothing here knows about
categories, items or runs.

  spec.py        model specs (the embedded default, a folder, a .gguf, a hub id) and their errors
  load.py        load a spec on a device and dtype, merge adapters, fingerprints, the cache folder
  protocol.py    the engine protocol every backend keeps (greedy, sample, score) and its types
  backends.py    the registry of engines ("hf", "vllm"), lazily imported
  hf.py          the Hugging Face engine (CPU or GPU): prefix KV reuse, drafts, exact scores
  kernels.py     CPU attention as grouped matmuls, preallocated KV caches
  sampling.py    counter-based sampling and tempered top-k probabilities
  vllm.py        the vLLM engine (GPU)
  onednn_head.py the LM head on oneDNN for fp32 CPUs
"""
