"""How an :class:`Item` is stored in its Chroma record, and the content hashes of a catalog.

Each record: id = item id, its vector, metadata = the item's fields so ``where`` filters work
and the :class:`Item` can be rebuilt. No document: nothing reads one, and Chroma's full-text
index over documents was a fifth of the write (collections written before 2026-12-05 still
hold ``Item.embedding_text()`` there, unread; a rewritten record keeps its old one):

===============  ===========================================================
``title``        str
``category``     str ("" when none)
``description``  str (only when non-empty)
``tags``         list of str (only when non-empty): ``{"tags": {"$contains": "Comedy"}}``
``popularity``   float (only when known): ``{"popularity": {"$gte": 100}}``
attributes       flattened to top-level keys, e.g. ``{"year": {"$lt": 1980}}``
``_hash``        content hash of the item and embedding model (skip unchanged on re-ingest)
``_attrs``       the attribute names, so attributes come back as attributes
===============  ===========================================================
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from genrec.data.item import Item

_RESERVED = frozenset({"title", "category", "description", "tags", "popularity", "_hash", "_attrs"})


def item_hash(item: Item, model_id: str) -> str:
    """sha1 of ``[model_id, item.model_dump(mode="json")]`` as sorted JSON. The dict is built by
    hand: the same bytes (tested), a third of the time of model_dump at 300k items."""
    fields = {
        "attributes": item.attributes,
        "category": item.category,
        "description": item.description,
        "id": item.id,
        "popularity": item.popularity,
        "tags": item.tags,
        "title": item.title,
    }
    payload = json.dumps([model_id, fields], sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()


def catalog_digest(hashes: dict[str, str]) -> str:
    h = hashlib.sha1()
    for item_id in sorted(hashes):
        h.update(f"{item_id}\0{hashes[item_id]}\n".encode())
    return h.hexdigest()


def item_to_metadata(item: Item, content_hash: str) -> dict[str, Any]:
    md: dict[str, Any] = {"title": item.title, "category": item.category, "_hash": content_hash}
    if item.description:
        md["description"] = item.description
    if item.tags:
        md["tags"] = list(item.tags)
    if item.popularity is not None:
        md["popularity"] = float(item.popularity)
    if item.attributes:
        md["_attrs"] = list(item.attributes)
        for key, value in item.attributes.items():
            md[_attr_key(key)] = value
    return md


def item_from_metadata(item_id: str, md: dict[str, Any]) -> Item:
    attributes = {
        name: md[_attr_key(name)] for name in md.get("_attrs") or () if _attr_key(name) in md
    }
    return Item(
        id=item_id,
        title=md["title"],
        description=md.get("description", ""),
        category=md.get("category", ""),
        tags=list(md.get("tags") or []),
        attributes=attributes,
        popularity=md.get("popularity"),
    )


def _attr_key(name: str) -> str:
    return f"attr_{name}" if name in _RESERVED else name
