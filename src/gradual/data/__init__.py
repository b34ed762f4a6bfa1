"""QA data: the item schema, importers, the built-in world benchmark and splits."""

from gradual.data.items import Item, read_items, write_items, load_dataset_dir, SPLITS

__all__ = ["Item", "read_items", "write_items", "load_dataset_dir", "SPLITS"]
