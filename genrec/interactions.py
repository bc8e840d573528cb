"""Transitional: the old path of :mod:`genrec.data.log_columns` (and its interactions module).

Only bench/train_scale.py still imports it: another branch changes bench/ now. Remove this module
once it imports from genrec.data (one sed after the merge).
"""

from genrec.data.log_columns import read_columns

__all__ = ["read_columns"]
