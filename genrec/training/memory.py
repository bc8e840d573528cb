"""What `genrec train` will need in memory, estimated before any work, and what it may use.

Estimates are upper bounds from sizes known up front (events, items, users, parameters): the
log's arrays, each model's peak while it fits and validates, and the models kept for writing.
They are checked against ``settings.train_memory_gb`` (default: the memory available now,
within a container's limit), so a run that cannot fit fails in seconds with the figure, not
after minutes with a MemoryError.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from genrec.errors import CatalogError
from genrec.settings import Settings

GB = 1e9


def budget_bytes(settings: Settings) -> int:
    """The memory training may use: the setting, else what the machine has available now."""
    if settings.train_memory_gb is not None:
        return int(settings.train_memory_gb * GB)
    available = psutil.virtual_memory().available
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            used = psutil.Process().memory_info().rss
            available = min(available, int(text) - used)
    return int(available)


def process_bytes() -> int:
    """This process's resident memory now (what every estimate adds to)."""
    return int(psutil.Process().memory_info().rss)


def log_bytes(path: Path) -> int:
    """Reading a log file into columns: ~16 bytes an event for the codes and timestamps, plus
    the sort in build (indices and copies, ~40), plus the distinct IDs (bounded by the file);
    events are estimated from the file's size at 14 bytes a line at least."""
    size = path.stat().st_size if path.is_file() else 0
    events = size // 14
    return int(events * 56 + size)


def check(what: str, need: int, budget: int, *, hint: str) -> None:
    """CatalogError naming ``what`` and both figures when ``need`` exceeds ``budget``."""
    if need > budget:
        raise CatalogError(
            f"{what} needs an estimated {need / GB:.2f} GB of memory, more than the "
            f"{budget / GB:.2f} GB available for training (GENREC_TRAIN_MEMORY_GB); {hint}",
            param="log",
            code="insufficient_memory",
        )


def gb(n: int) -> float:
    return round(n / GB, 2)
