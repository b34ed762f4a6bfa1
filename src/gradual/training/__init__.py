"""Pieces of the stage trainer (gradual.train): data encoding, collation, length grouping, replay.

Run as: used by gradual.train.
"""
