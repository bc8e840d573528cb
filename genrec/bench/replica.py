"""What one replica holds in memory, and what a hot reload costs, as JSON on stdout.

Opens a collection the way ``genrec serve`` does (catalog index and embedder, chat tokenizer,
retrievers of the current bundle) and reports the process's resident memory after each part,
then times :meth:`genrec.retrieval.reload.Reloader.check` loading the same bundle again (what a
replica does when ``CURRENT`` moves) and the resident memory while two bundles are held, as they
are for the moment of a swap. Uses GENREC_* settings (GENREC_HOME, GENREC_CHROMA_URL).

    python -m genrec.bench.replica --collection ml-100k
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
import time
from pathlib import Path

from genrec.settings import Settings


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return round(int(found.group(1)) / 1024, 1) if found else float("nan")


def measure(settings: Settings, collection: str, repeats: int) -> dict:
    from genrec.index import CatalogIndex
    from genrec.model_files import model_path
    from genrec.prompts import ChatTokenizer
    from genrec.retrieval.registry import bundle_retrievers
    from genrec.retrieval.reload import Reloader
    from genrec.training import artifacts

    doc: dict = {"collection": collection, "rss_mib": {"start": rss_mib()}}
    index = CatalogIndex(settings, collection)
    index.warm()
    doc["items"] = index.count()
    doc["rss_mib"]["index_and_embedder"] = rss_mib()
    ChatTokenizer.load(model_path(settings))
    doc["rss_mib"]["tokenizer"] = rss_mib()
    reloader = Reloader.load(settings, index)
    doc["rss_mib"]["retrievers"] = rss_mib()
    bundle = artifacts.current(settings, collection)
    doc["bundle"] = None
    if bundle is not None:
        doc["bundle"] = {
            "version": bundle.version,
            "models": sorted(bundle.manifest["models"]),
            "bytes_on_disk": sum(p.stat().st_size for p in bundle.path.iterdir()),
        }
        seconds = []
        for _ in range(repeats):  # a reload of the serving bundle: what a swap costs
            reloader.retrievers = bundle_retrievers(settings, index, None)
            gc.collect()
            t0 = time.perf_counter()
            assert reloader.check(force=True)
            seconds.append(time.perf_counter() - t0)
        doc["reload_s"] = {"min": round(min(seconds), 3), "max": round(max(seconds), 3)}
        held = reloader.retrievers  # an old bundle kept by a request in flight
        reloader.retrievers = bundle_retrievers(settings, index, None)
        reloader.check(force=True)
        doc["rss_mib"]["two_bundles_held"] = rss_mib()
        del held
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    settings = Settings.load()
    doc = measure(settings, args.collection or settings.collection, args.repeats)
    json.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
