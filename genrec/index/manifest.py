"""The hash manifest of a collection: every record's content hash, in one file beside Chroma.

A re-ingest must know which items changed; reading every stored hash back from Chroma costs as
much as a tenth of the ingest itself at 300k items. The writer keeps the ID -> hash map of the
whole collection in ``$GENREC_HOME/manifests/<collection>.json`` instead, written after each
write that finished, through a temporary file and a rename.

It is trusted only while it describes the collection as it is: its header names the Chroma
collection's UUID and the ``genrec_written`` stamp of the write that made it, and the collection
must be complete with that very stamp. Every genrec write moves the stamp, so a write made
elsewhere (another GENREC_HOME against one Chroma server), an interrupted ingest or a collection
dropped and made again all make the manifest stale, and the writer reads the hashes from Chroma
once (:meth:`ChromaStore.all_hashes`) and writes a fresh manifest.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("genrec.index.manifest")

FORMAT = 1


class HashManifest:
    def __init__(self, home: Path, collection: str) -> None:
        self.path = home / "manifests" / f"{collection}.json"

    def load(self, collection_id: str, meta: dict[str, Any]) -> dict[str, str] | None:
        """ID -> hash of every record, or None when there is no manifest that fits the
        collection as it is now (then the caller reads the hashes from Chroma)."""
        if not meta.get("genrec_complete") or meta.get("genrec_written") is None:
            return None
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable hash manifest %s (%s)", self.path, exc)
            return None
        if not isinstance(doc, dict) or (
            doc.get("format"),
            doc.get("collection_id"),
            doc.get("written"),
        ) != (FORMAT, collection_id, meta.get("genrec_written")):
            return None
        hashes = doc.get("hashes")
        return hashes if isinstance(hashes, dict) else None

    def save(self, collection_id: str, written: Any, hashes: dict[str, str]) -> None:
        """Replace the manifest; a failure costs the next ingest one read from Chroma, so it is
        logged, not raised."""
        doc = {"format": FORMAT, "collection_id": collection_id, "written": written}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    # the header first, then the map: one json.dumps of 300k entries, ~0.3 s
                    fh.write(json.dumps(doc)[:-1] + ', "hashes": ')
                    fh.write(json.dumps(hashes, separators=(",", ":")))
                    fh.write("}")
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("could not write the hash manifest %s (%s)", self.path, exc)

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)
