"""Transitional: the old path of :mod:`genrec.data.catalog_files` and :mod:`genrec.data.item`.

Only index/, server/, recommender.py and bench/ still import it: other branches change those files
now. Remove this module once they import from genrec.data (one rewrite after the merge).
"""

from genrec.data.catalog_files import (
    DATASETS,
    FORMATS,
    CatalogFile,
    LoadResult,
    RowError,
    check_rows,
    load_catalog,
    load_dataset,
    open_source,
    parse_mapping,
)
from genrec.data.item import ITEM_FIELDS, AttrValue, Item, id_key, open_text

__all__ = ["DATASETS", "FORMATS", "ITEM_FIELDS", "AttrValue", "CatalogFile", "Item", "LoadResult"]
__all__ += ["RowError", "check_rows", "id_key", "load_catalog", "load_dataset", "open_source"]
__all__ += ["open_text", "parse_mapping"]
