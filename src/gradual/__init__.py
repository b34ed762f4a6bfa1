"""gradual: knowledge-aware gradual fine-tuning of language models.

Probe what a model knows (SliCK categories), fine-tune in stages on what it partially knows,
and measure what was acquired and forgotten. See README.md for the CLI.
"""

__version__ = "0.1.0"
