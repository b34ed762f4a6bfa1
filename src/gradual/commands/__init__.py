"""CLI command groups, one module each; `gradual.cli` registers them."""
