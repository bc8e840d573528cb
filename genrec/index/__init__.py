"""The catalog index: a Chroma collection per catalog, read through an in-process mirror.

- :mod:`.store`: Chroma plumbing (client, collection, metadata, the write lock, reads, queries);
- :mod:`.records`: how an item is stored in its record, and content hashes;
- :mod:`.mirror`: the items and title maps kept in process, revalidated against a write stamp;
- :mod:`.writer`: upsert / delete / ``sync`` (the one write path of ingest and the eval suite);
- :mod:`.manifest`: every record's content hash in a file beside Chroma, so a re-ingest knows
  what changed without reading the collection back;
- :mod:`.catalog_index`: :class:`CatalogIndex`, which resolves histories and searches, with
  :mod:`.text_queries` (query vectors), :mod:`.allowed` and :mod:`.filtered` (filters' matching
  IDs and vectors, remembered) and :mod:`.lexical_channel` (BM25, :mod:`.lexical`).
"""

from genrec.filters import validate_where
from genrec.index.catalog_index import CatalogIndex, SearchHit
from genrec.index.records import item_from_metadata, item_to_metadata
from genrec.index.writer import IngestReport

__all__ = [
    "CatalogIndex",
    "IngestReport",
    "SearchHit",
    "item_from_metadata",
    "item_to_metadata",
    "validate_where",
]
