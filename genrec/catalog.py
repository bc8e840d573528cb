"""Transitional: the old path of :mod:`genrec.data.catalog_files` and :mod:`genrec.data.item`.

Only index/, server/, recommender.py and bench/ still import it: other branches change those files
now. Remove this module once they import from genrec.data (one sed after the merge).
"""

from genrec.data.catalog_files import load_catalog, load_dataset
from genrec.data.item import Item, id_key

__all__ = ["Item", "id_key", "load_catalog", "load_dataset"]
