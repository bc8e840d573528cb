"""One writer per embedded Chroma folder, across processes.

Chroma's embedded ``PersistentClient`` is not safe across processes: each keeps its own in-memory
view of the vector index, so a second process writing into the same folder (say `genrec ingest`
while `genrec serve` runs on the same GENREC_HOME) leaves the first one serving a stale index and
can corrupt the folder. genrec therefore keeps a readers-writer lock on ``<folder>/genrec.lock``:

- a process that opens the folder holds a *shared* lock until it exits (Chroma keeps the folder
  open that long too);
- each write (an ingest, a delete, dropping a collection) takes it *exclusively* for its duration
  and then steps back to shared.

So any number of processes may read together, and a write while another process has the folder
open, or an open while another process writes, fails at once with :class:`CatalogBusy` saying what
to do, instead of waiting or corrupting anything. A Chroma server (GENREC_CHROMA_URL) is the way to
share one catalog between processes; it needs no lock of ours.

POSIX record locks (``fcntl.lockf``) are used because converting shared <-> exclusive is atomic
with them and a failed conversion keeps the shared lock; the kernel drops them when a process
dies, so a killed ingest leaves no stale lock. They belong to the process, so threads and several
:class:`~genrec.index.CatalogIndex` objects of one process share one lock per folder.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from genrec.errors import CatalogBusy

_SHARE_HINT = (
    "share one catalog between processes through a Chroma server "
    "(`chroma run --path DIR --port 8001`, then GENREC_CHROMA_URL=http://127.0.0.1:8001)"
)


class FolderLock:
    _held: dict[Path, FolderLock] = {}  # one per folder per process (POSIX locks are per process)
    _registry = threading.Lock()

    def __init__(self, folder: Path, handle: IO[str]):
        self.folder = folder
        self._handle = handle  # never closed: closing any handle would drop the process's lock
        self._writers = 0
        self._lock = threading.Lock()

    @classmethod
    def open_shared(cls, folder: Path) -> FolderLock:
        """This process's lock on ``folder``, taken shared the first time it is asked for."""
        folder = folder.resolve()
        with cls._registry:
            lock = cls._held.get(folder)
            if lock is None:
                folder.mkdir(parents=True, exist_ok=True)
                handle = open(folder / "genrec.lock", "a+")  # noqa: SIM115 - held for life
                try:
                    fcntl.lockf(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:
                    handle.close()
                    raise CatalogBusy(
                        f"the catalog folder {folder} is being written by another process "
                        f"(a `genrec ingest`?); run this again when it has finished, or "
                        f"{_SHARE_HINT}"
                    ) from None
                lock = cls._held[folder] = cls(folder, handle)
            return lock

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the folder exclusively for a write (re-entrant, and shared by this process's
        threads: Chroma orders writes within one process itself)."""
        with self._lock:
            if self._writers == 0:
                try:
                    fcntl.lockf(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    raise CatalogBusy(
                        f"the catalog folder {self.folder} is open in another process (a "
                        f"`genrec serve`, `search` or `ingest`?), and an embedded catalog takes "
                        f"writes only while no other process has it open; stop that process, "
                        f"give this one a GENREC_HOME of its own, or {_SHARE_HINT}"
                    ) from None
            self._writers += 1
        try:
            yield
        finally:
            with self._lock:
                self._writers -= 1
                if self._writers == 0:
                    fcntl.lockf(self._handle, fcntl.LOCK_SH)
