"""Transitional: the old path of :mod:`genrec.data.interactions` and :mod:`genrec.data.log_columns`.

Only bench/train_scale.py still imports it: another branch changes bench/ now. Remove this module
once it imports from genrec.data (one rewrite after the merge).
"""

from genrec.data.interactions import (
    FORMATS,
    Interaction,
    LogRead,
    Row,
    guess_format,
    log_file,
    parse_timestamp,
    read_log,
)
from genrec.data.log_columns import BLOCK_BYTES, MAX_ERRORS, LogColumns, read_columns

__all__ = ["BLOCK_BYTES", "FORMATS", "MAX_ERRORS", "Interaction", "LogColumns", "LogRead", "Row"]
__all__ += ["guess_format", "log_file", "parse_timestamp", "read_columns", "read_log"]
