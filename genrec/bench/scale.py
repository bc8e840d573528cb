"""``genrec bench scale``: genrec at a catalog size of your choice, end to end, as one JSON
document.

Steps (progress on stderr):

1. **data**: a seeded synthetic catalog and log (:mod:`genrec.bench.synthetic`) in the work
   folder (kept, and reused when the same sizes and seed ask again);
2. **ingest**: ``genrec ingest`` as a subprocess (items/s, its peak RSS), skipped with ``reuse``
   when the collection already holds the catalog complete;
3. **train**: ``genrec train --models M`` as a subprocess per model (seconds, peak RSS, validation
   NDCG@10), then once with all of them: the bundle that serves (with ``hybrid``);
4. **retrieve**: the request path's retrieve stage per retriever, with and without a metadata
   filter, at concurrency 1 and 8, in a fresh process whose RSS is the replica's retrieval memory
   (:mod:`genrec.bench.scale_latency`);
5. **rank** (optional; needs the LM): a rank request's latency on this collection against the same
   request shape on ML-100K, interleaved in one process (:mod:`genrec.bench.scale_rank`).

Peak RSS of a subprocess is its own (``wait4``'s rusage), not the benchmark's. Subprocesses share
the benchmark's GENREC_HOME; the benchmark itself opens the catalog only once they are done
(embedded Chroma is one writer at a time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genrec.bench import synthetic
from genrec.errors import GenrecError
from genrec.settings import Settings

Say = Callable[[str], None]
CLI = "from genrec.cli import app; app()"  # `genrec` as `python -c`: the same interpreter


@dataclass
class ScaleOptions:
    items: int = 300_000
    users: int = 100_000
    events: int = 3_000_000
    seed: int = 0
    models: list[str] = field(default_factory=lambda: ["itemknn", "sasrec"])
    work: Path = Path("scale-bench")  # data files and per-step logs
    data: Path | None = None  # a folder with catalog.jsonl and log.csv made earlier (no generating)
    collection: str | None = None  # default: scale-<items>-s<seed>
    reuse: bool = False  # keep an existing complete collection and bundle as they are
    standin: bool = False  # stand-in vectors (genrec.bench.standin): minutes, for latency only
    sasrec_seconds: float | None = 600.0  # genrec train --max-seconds
    retrievers: list[str] = field(default_factory=lambda: ["auto"])  # auto: all served
    requests: int = 200  # timed requests per cell
    concurrency: list[int] = field(default_factory=lambda: [1, 8])
    k: int = 20  # candidates per request
    history: int = 20  # history items per request
    rank: bool = True
    rank_requests: int = 30
    rank_retriever: str = "content"  # the same retriever on both collections

    @property
    def name(self) -> str:
        return self.collection or f"scale-{self.items}-s{self.seed}"


def run_scale(
    settings: Settings, options: ScaleOptions, say: Say, *, engine: Any = None
) -> dict[str, Any]:
    """Every step; returns the JSON document. ``engine``: a running LM engine to share (tests)."""
    load_start = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    options.work.mkdir(parents=True, exist_ok=True)
    env = _child_env(settings)
    data = make_data(options, say)
    out: dict[str, Any] = {
        "benchmark": "scale",
        "collection": options.name,
        "sizes": {"items": options.items, "users": options.users, "events": data["events"]},
        "seed": options.seed,
        "cpus": os.cpu_count(),
        "load_average_at_start": load_start,
        "data": data,
    }
    out["ingest"] = ingest(options, data, env, say)
    out["train"] = train(options, data, env, say)
    out["retrieve"] = retrieval(options, data, env, say)
    if options.rank:
        from genrec.bench.scale_rank import rank_comparison

        out["rank"] = rank_comparison(
            settings, options.name, Path(data["log"]), options, say, engine=engine
        )
    out["options"] = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def make_data(options: ScaleOptions, say: Say) -> dict[str, Any]:
    if options.data is not None:
        catalog, log = options.data / "catalog.jsonl", options.data / "log.csv"
        if not (catalog.is_file() and log.is_file()):
            raise GenrecError(f"{options.data} has no catalog.jsonl and log.csv", param="data")
        with log.open(encoding="utf-8") as fh:
            events = sum(1 for _ in fh) - 1
        say(f"scale: data from {options.data} ({events} events)")
        return {"catalog": str(catalog), "log": str(log), "events": events, "given": True}
    sizes = synthetic.Sizes(options.items, options.users, options.events, options.seed)
    folder = options.work / f"data-{options.items}-{options.users}-{options.events}-s{options.seed}"
    done = folder / "written.json"
    if done.is_file():
        say(f"scale: data in {folder} (kept from an earlier run)")
        return json.loads(done.read_text())
    say(f"scale: writing {options.items} items and {options.events} events to {folder} ...")
    t0 = time.perf_counter()
    written = synthetic.write(folder, sizes)
    written["seconds"] = round(time.perf_counter() - t0, 1)
    done.write_text(json.dumps(written))
    return written


def ingest(options: ScaleOptions, data: dict, env: dict[str, str], say: Say) -> dict[str, Any]:
    if options.reuse and (held := _held_items(options.name, env)) == options.items:
        say(f"scale: collection {options.name} already holds the catalog; ingest skipped")
        return {"skipped": "reused", "items": held}
    say(f"scale: ingesting into {options.name} ...")
    if options.standin:
        cmd = ["-m", "genrec.bench.standin", data["catalog"], options.name]
    else:
        cmd = ["ingest", data["catalog"], "--collection", options.name, "--json"]
    run = run_child(cmd, env, options.work / "ingest.log", module=options.standin)
    report = run.pop("json")
    return {
        **run,
        "vectors": report.get("vectors", "the embedding model"),
        "items": report["total"],
        "written": report["written"],
        "items_per_s": report["items_per_s"],
        "ingest_seconds": report["seconds"],
    }


def train(options: ScaleOptions, data: dict, env: dict[str, str], say: Say) -> dict[str, Any]:
    if options.reuse and _has_bundle(options.name, env):
        say(f"scale: collection {options.name} already has trained retrievers; training skipped")
        return {"skipped": "reused"}
    base = ["train", data["log"], "--collection", options.name, "--seed", str(options.seed)]
    if options.sasrec_seconds:
        base += ["--max-seconds", str(options.sasrec_seconds)]
    out: dict[str, Any] = {}
    runs = [[m] for m in options.models]
    if len(options.models) > 1:
        runs.append(list(options.models))  # the serving bundle: every model and their hybrid
    for models in runs:
        label = "+".join(models)
        say(f"scale: training {label} ...")
        cmd = [*base, "--models", ",".join(models), "--json"]
        run = run_child(cmd, env, options.work / f"train-{label}.log")
        manifest = run.pop("json")
        run["validation_ndcg@10"] = {
            name: m["validation"]["ndcg@10"] for name, m in manifest["models"].items()
        }
        run["default"] = manifest["default"]
        out[label] = run
    return out


def retrieval(options: ScaleOptions, data: dict, env: dict[str, str], say: Say) -> dict[str, Any]:
    spec = {
        "collection": options.name,
        "log": data["log"],
        "requests": options.requests,
        "k": options.k,
        "length": options.history,
        "retrievers": options.retrievers,
        "concurrency": options.concurrency,
        "seed": options.seed,
    }
    spec_file = options.work / "retrieve-spec.json"
    spec_file.write_text(json.dumps(spec))
    say("scale: timing retrieval in a fresh process ...")
    cmd = ["-m", "genrec.bench.scale_latency", str(spec_file)]
    run = run_child(cmd, env, options.work / "retrieve.log", module=True)
    return {**run.pop("json"), "process": run}


def run_child(
    args: Sequence[str], env: dict[str, str], log: Path, *, module: bool = False
) -> dict[str, Any]:
    """Run ``genrec ARGS`` (or ``python ARGS`` with ``module``) to completion: its JSON stdout,
    wall seconds and its own peak RSS; stderr goes to ``log`` and, at the end, to ours."""
    cmd = [sys.executable, *args] if module else [sys.executable, "-c", CLI, *args]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, log.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        seconds = time.perf_counter() - t0
        stdout.seek(0)
        text = stdout.read()
    if proc.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
        raise GenrecError(f"`{' '.join(args[:2])} ...` exited with {proc.returncode}:\n{tail}")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"`{' '.join(args[:2])} ...` printed no JSON ({exc}); see {log}"
        raise GenrecError(msg) from exc
    peak = round(usage.ru_maxrss / 1024)  # ru_maxrss is in KiB on Linux
    return {"json": doc, "seconds": round(seconds, 1), "peak_rss_mib": peak}


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["GENREC_HOME"] = str(settings.home)
    if settings.model_cache is not None:
        env["GENREC_MODEL_CACHE"] = str(settings.model_cache)
    env.pop("GENREC_COLLECTION", None)  # every command here names its collection
    return env


def _probe(code: str, env: dict[str, str]) -> str:
    """A one-line answer from a short-lived process, so this one never holds Chroma open while
    the subprocesses write to it."""
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def _held_items(name: str, env: dict[str, str]) -> int:
    code = (
        "from genrec.settings import Settings; from genrec.index import CatalogIndex\n"
        f"i = CatalogIndex(Settings.load(), {name!r})\n"
        "print(i.count() if i.exists() and i.complete else 0)"
    )
    answer = _probe(code, env)
    return int(answer) if answer.isdigit() else 0


def _has_bundle(name: str, env: dict[str, str]) -> bool:
    code = (
        "from genrec.settings import Settings; from genrec.training import artifacts\n"
        f"print(artifacts.current(Settings.load(), {name!r}) is not None)"
    )
    return _probe(code, env) == "True"
