"""Text vectors of every catalog item from a chosen encoder, kept in Chroma beside the catalog.

One collection per (catalog collection, encoder): ``{collection}.itemvec.{encoder}``, cosine
space, the items' metadata copied beside the vectors (so ``where`` filters work when it is
searched). Its metadata records what the vectors are valid for:

``genrec_embedding_model``   the encoder's model ID (for ``lm``: folder name, a fingerprint of its
                             config and weights, layer, pooling, dtype); ChromaStore refuses a
                             collection filled by another model
``genrec_catalog_digest``    the catalog's ``genrec_digest`` the vectors were computed for
``genrec_complete``          false while writing, true after the last batch

:func:`ensure_item_vectors` reuses the set when digest and model match, and otherwise brings it
up to date: only items whose content hash changed (or are new) are encoded again, removed items
are deleted, then the digest is recorded. :func:`read_item_vectors` (serving, a trained bundle)
never rebuilds: a set for another digest is a ConfigError, never silently used.

Encoders: ``lm`` (the served LM's mean-pooled hidden states, :mod:`genrec.embeddings_lm`),
``minilm`` (all-MiniLM-L6-v2) and ``e5`` (multilingual-e5-small), so the LM's vectors can be
measured against the sentence embedders for the same use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

import numpy as np

from genrec.data.item import Item
from genrec.errors import ConfigError, NotFound
from genrec.index.store import ChromaStore, item_hash, item_to_metadata
from genrec.settings import Settings

ItemEncoderName = Literal["lm", "minilm", "e5"]
ITEM_ENCODERS: tuple[str, ...] = ("lm", "minilm", "e5")


class TextEncoder(Protocol):
    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def vectors_name(collection: str, encoder: str) -> str:
    return f"{collection}.itemvec.{encoder}"


def make_encoder(settings: Settings, encoder: str) -> TextEncoder:
    """The encoder by name; ``lm`` reads the served model's folder (GENREC_MODEL or the
    converted default)."""
    if encoder == "lm":
        from genrec.embeddings_lm import LMEncoder
        from genrec.model_files import model_path

        return LMEncoder(model_path(settings), layer=settings.lm_vectors_layer)
    from genrec.embeddings import INT8_MODEL, PACKAGED_MODEL, Embedder
    from genrec.embeddings_e5 import E5_MODEL

    names = {"minilm": PACKAGED_MODEL, "minilm-int8": INT8_MODEL, "e5": E5_MODEL}
    if encoder not in names:
        raise ConfigError(
            f"unknown item encoder {encoder!r}; use one of {', '.join(ITEM_ENCODERS)}",
            param="item_encoder",
        )
    return Embedder(settings, model_path=names[encoder])


def vector_store(settings: Settings, collection: str, encoder: str, model_id: str) -> ChromaStore:
    return ChromaStore(settings, vectors_name(collection, encoder), model_id=model_id)


def read_item_vectors(store: ChromaStore, digest: str | None, ids: Sequence[str]) -> np.ndarray:
    """(len(ids), dim) float32 for these IDs from a complete set made for ``digest``; a set for
    another digest (or an incomplete one, or one missing an ID) is an error naming it."""
    meta = store.metadata
    if not meta:
        raise NotFound(
            f"item vectors {store.name!r} do not exist; run `genrec train` with the semantic "
            f"retrievers to compute them",
            param="collection",
        )
    if not meta.get("genrec_complete"):
        raise ConfigError(f"item vectors {store.name!r} are incomplete (a killed write)")
    stored = meta.get("genrec_catalog_digest")
    if digest is not None and stored != digest:
        raise ConfigError(
            f"item vectors {store.name!r} were computed for catalog digest {stored}, not "
            f"{digest}: vectors of another catalog state are never used; run `genrec train` "
            f"again to recompute them",
            param="collection",
        )
    found = store.vectors(list(ids))
    missing = [i for i in ids if i not in found]
    if missing:
        raise ConfigError(
            f"item vectors {store.name!r} lack {len(missing)} items (e.g. {missing[:3]})",
            param="collection",
        )
    return np.stack([found[i] for i in ids]) if ids else np.zeros((0, 0), np.float32)


def ensure_item_vectors(
    settings: Settings,
    index: Any,
    encoder: str | TextEncoder,
    ids: Sequence[str],
    *,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The vectors of ``ids`` (catalog items) from the set for the catalog's current digest,
    computing what is missing or changed first. Returns (matrix, info for the manifest)."""
    say = progress or (lambda _m: None)
    name = encoder if isinstance(encoder, str) else getattr(encoder, "key", "custom")
    enc = make_encoder(settings, encoder) if isinstance(encoder, str) else encoder
    digest = index.metadata.get("genrec_digest")
    store = vector_store(settings, index.name, name, enc.model_id)
    meta = store.metadata
    fresh = (
        meta.get("genrec_complete")
        and meta.get("genrec_catalog_digest") == digest
        and meta.get("genrec_embedding_model") == enc.model_id
    )
    computed = 0
    if not fresh:
        computed = _update(store, index, enc, digest, say)
    info = {
        "encoder": name,
        "model_id": enc.model_id,
        "collection": store.name,
        "catalog_digest": digest,
        "computed": computed,
    }
    return read_item_vectors(store, digest, ids), info


def _update(store: ChromaStore, index: Any, enc: TextEncoder, digest: Any, say: Any) -> int:
    """Encode the catalog items whose hash the set lacks, delete the items gone; returns how
    many were encoded. The folder is held exclusively only while a batch is written, not while
    the LM encodes it (minutes), so readers of the catalog are not locked out meanwhile; a
    killed run leaves the set incomplete, and the next one encodes only what is still missing."""
    items: list[Item] = index.all_items()
    hashes = {it.id: item_hash(it, enc.model_id) for it in items}
    with store.writing():
        store.collection(create=True)
        store.set_metadata(genrec_complete=False)
    have = store.all_hashes()
    todo = [it for it in items if have.get(it.id) != hashes[it.id]]
    gone = [i for i in have if i not in hashes]
    say(
        f"item vectors ({enc.model_id}): {len(todo)} of {len(items)} items to encode "
        f"into {store.name}"
    )
    step = max(1, min(store.batch_size, 512))
    for start in range(0, len(todo), step):
        part = todo[start : start + step]
        vectors = np.asarray(enc.encode([it.embedding_text() for it in part]), dtype=np.float32)
        with store.writing():
            store.require().upsert(
                ids=[it.id for it in part],
                embeddings=vectors,
                metadatas=[item_to_metadata(it, hashes[it.id]) for it in part],
            )
        say(f"item vectors: {start + len(part)} / {len(todo)}")
    with store.writing():
        for start in range(0, len(gone), step):
            store.require().delete(ids=gone[start : start + step])
        store.set_metadata(genrec_catalog_digest=digest, genrec_complete=True)
    return len(todo)
