"""Collapse benchmark: self-train a small GPT on its own samples, curated by each strategy.

``python -m bench.collapse`` (see ``__main__``); the numbers and their sizing are in ``config``.
"""
