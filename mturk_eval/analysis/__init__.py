"""From ratings to the paper's tables. The notebook API (DataFrames in and out) lives in
:mod:`mturk_eval.analysis.frames` and is importable from here::

    from mturk_eval.analysis import load_ratings, table2, table3, comparisons, mixed_models, agreement, workers

Loaded lazily, so that importing a submodule (``batch_csv`` for ``collect``) does not import pandas.
"""
from __future__ import annotations

from typing import Any

__all__ = ["load_ratings", "analysis", "table2", "table3", "comparisons", "mixed_models", "agreement", "workers"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from mturk_eval.analysis import frames

        return getattr(frames, name)
    raise AttributeError(f"module 'mturk_eval.analysis' has no attribute {name!r}")
