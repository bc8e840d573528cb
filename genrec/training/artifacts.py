"""Trained retrievers on disk: one versioned bundle per training run, switched atomically.

``$GENREC_HOME/retrievers/<collection>/``::

    CURRENT                    the version that serves (replaced atomically, last)
    <version>/manifest.json    what was trained, on what, how long, validation metrics, weights
    <version>/items.json       index -> catalog ID
    <version>/itemknn.npz      a model's weights (one file per model)
    <version>/sasrec.pt

A bundle is written into a temporary folder, renamed into place complete, and only then named
in ``CURRENT``: a killed training leaves the previous bundle serving, and a half-written folder
is never read (its name starts with a dot and is swept by a later training). The previous
bundle is kept for rollback; older ones (and their item-vector collections) are removed once
they stopped serving ``settings.prune_grace_s`` ago, so a replica that has not yet reloaded
(genrec.recommender polls ``CURRENT``) never queries a dropped collection.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genrec.settings import Settings

FORMAT = 1
KEEP = 2  # bundles kept: the serving one and the one before it


def retrievers_dir(settings: Settings, collection: str) -> Path:
    return settings.home / "retrievers" / collection


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def item_ids(self) -> list[str]:
        return json.loads((self.path / "items.json").read_text(encoding="utf-8"))


def new_version(fingerprint: str) -> str:
    return (
        time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{fingerprint[:8]}-{uuid.uuid4().hex[:4]}"
    )


def current_version(settings: Settings, collection: str) -> str | None:
    """The version ``CURRENT`` names, None when none was trained; an OSError when the folder
    cannot be read (a shared volume briefly away): the caller retries."""
    pointer = retrievers_dir(settings, collection) / "CURRENT"
    try:
        return pointer.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def current(settings: Settings, collection: str) -> Bundle | None:
    """The serving bundle of a collection, or None when none was trained (or it is unreadable:
    then content retrieval serves, and the reason is in the ValueError's message)."""
    root = retrievers_dir(settings, collection)
    pointer = root / "CURRENT"
    if not pointer.is_file():
        return None
    version = pointer.read_text(encoding="utf-8").strip()
    if not (root / version / "manifest.json").is_file():
        raise ValueError(f"{pointer} names {version}, which has no manifest.json")
    return _read_bundle(root / version)


def bundles(settings: Settings, collection: str) -> list[Bundle]:
    """Every complete bundle of a collection, the serving one first, then newest first (what a
    caller that needs a bundle trained on given data searches; unreadable ones are left out)."""
    root = retrievers_dir(settings, collection)
    if not root.is_dir():
        return []
    serving = current_version(settings, collection)
    paths = sorted(root.iterdir(), key=lambda p: p.name, reverse=True)
    paths.sort(key=lambda p: p.name != serving)  # stable: the serving one, then newest first
    found = []
    for path in paths:
        if path.name.startswith(".") or not (path / "manifest.json").is_file():
            continue  # a training still writing, or not a bundle
        try:
            found.append(_read_bundle(path))
        except (OSError, ValueError):
            continue
    return found


def _read_bundle(path: Path) -> Bundle:
    """The bundle at ``path``; ValueError when its manifest is not this format's."""
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_path}: format {manifest.get('format')}, expected {FORMAT}")
    return Bundle(path, manifest)


def write_bundle(
    settings: Settings,
    collection: str,
    manifest: dict[str, Any],
    item_ids: list[str],
    writers: dict[str, Callable[[Path], None]],
) -> Bundle:
    """Write a complete bundle (each writer writes its file at the path it is given), then make
    it current. Returns the new bundle."""
    root = retrievers_dir(settings, collection)
    root.mkdir(parents=True, exist_ok=True)
    version = manifest["version"]
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=root))
    try:
        for name, write in writers.items():
            write(tmp / name)
        _write_json(tmp / "items.json", item_ids)
        _write_json(tmp / "manifest.json", {**manifest, "format": FORMAT})
        _fsync_dir(tmp)
        os.rename(tmp, root / version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer_tmp = root / f".CURRENT.{uuid.uuid4().hex}"
    pointer_tmp.write_text(version + "\n", encoding="utf-8")
    os.replace(pointer_tmp, root / "CURRENT")
    _fsync_dir(root)
    return Bundle(root / version, {**manifest, "format": FORMAT})


def stale_bundles(settings: Settings, collection: str, *, now: float | None = None) -> list[Path]:
    """What a training may delete: bundles beyond the KEEP newest (never the serving one) that
    stopped serving at least ``settings.prune_grace_s`` ago, and temporary folders of
    interrupted trainings untouched for as long (a younger one may be another training's, still
    being written). A bundle stopped serving when the next newer one was written."""
    root = retrievers_dir(settings, collection)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    grace = settings.prune_grace_s
    pointer = root / "CURRENT"
    serving = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None
    done = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
        reverse=True,
    )
    stale: list[Path] = []
    for newer, path in zip(done, done[1:], strict=False):
        if path in done[:KEEP] or path.name == serving:
            continue
        if now - _mtime(newer / "manifest.json", default=now) >= grace:
            stale.append(path)
    tmp = [p for p in root.iterdir() if p.name.startswith(".") and p.is_dir()]
    return stale + [p for p in tmp if now - _mtime(p, default=now) >= grace]


def _mtime(path: Path, *, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default  # unknown: as if just now, so nothing is deleted on its account


def _write_json(path: Path, doc: Any) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
