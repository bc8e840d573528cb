"""``genrec train``: retrievers learned from interactions, chosen on a held-out item per user.

One run, start to end (every choice on validation, never on a test item):

1. index the log against the catalog (:mod:`.data`); hold out each user's last item;
2. fit each model on the rest and score the held-out items (full ranking, history masked);
   ``sasrec`` keeps its best epoch by validation NDCG@10;
3. fuse content with the learned models (``hybrid``), weights searched on the same held-out items;
4. refit the non-iterative models on everything (the held-out items included: serving should
   know the latest behaviour; SASRec keeps the weights chosen on validation);
5. write the bundle (:mod:`.artifacts`), which becomes current last: a killed run leaves the
   previous one serving. (SASRec's item vectors are in its weights; serving searches them in
   process, genrec.retrieval.item_search.)

The default retriever of the collection is the one with the best validation NDCG@10.

At scale (:mod:`.memory`, :mod:`.validation`): each model's peak memory is estimated before any
work (ease is skipped when its n x n matrices do not fit, anything else over the budget is an
error naming it); validation ranks a batch of users at a time, on a seeded sample of users when
there are many, and the hybrid is tuned on a smaller sample (one content query per user).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from genrec.errors import CatalogBusy, InvalidRequest
from genrec.evaluation.metrics import mean, ranking_metrics
from genrec.index import CatalogIndex
from genrec.index.item_vectors import ensure_item_vectors
from genrec.index.store import ChromaStore
from genrec.retrieval.base import Candidate, RetrievalQuery
from genrec.retrieval.content import ContentRetriever
from genrec.retrieval.hybrid import MIN_POOL, Scored
from genrec.settings import Settings
from genrec.training import artifacts, memory, validation
from genrec.training.collaborative import SCORING, SCORING_PARAMS, ease_bytes
from genrec.training.cooccurrence import ItemKNNParams, itemknn_bytes, itemknn_entries
from genrec.training.data import TrainingData
from genrec.training.fusion_search import KS, choose_weights
from genrec.training.text import fit_sasrec, fit_semantic, hybrid_members

MODELS = (*SCORING, "sasrec", "sasrec_text", "semantic")
TEXT_DIM_BOUND = 1024  # text vectors' width, for memory estimates (SmolLM2: 576, MiniLM 384)
TEXT_MODELS = ("sasrec_text", "semantic")  # read the items' text vectors (genrec.training.text)

Progress = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def plan_memory(
    settings: Settings, data: TrainingData, models: Sequence[str], sasrec_params: Any
) -> tuple[list[str], dict[str, Any]]:
    """Estimate each stage's peak before any work: the models that fit (ease is skipped when
    its n x n matrices do not; any other model over the budget is a CatalogError naming it and
    the figure) and the plan for the manifest."""
    from genrec.training.sequential import SASRecParams, sasrec_bytes

    budget = memory.budget_bytes(settings)
    n, events, users = data.n_items, data.n_events, len(data.users)
    # The process as it is now (libraries, the catalog client, the data), plus the held-out
    # copy of the sequences and the per-user validation arrays.
    base = memory.process_bytes() + events * 4 + users * 64 + n * 120
    need: dict[str, int] = {}
    size: dict[str, int] = {}  # what a fitted model keeps until the bundle is written
    kept: list[str] = []
    skipped: dict[str, str] = {}
    for name in models:
        if name == "itemknn":
            need[name] = itemknn_bytes(n, events, ItemKNNParams())
            size[name] = itemknn_entries(n, events, ItemKNNParams()) * 8
        elif name == "ease":
            need[name] = ease_bytes(n)
            size[name] = n * n * 4
            if base + need[name] > budget:
                skipped[name] = (
                    f"ease skipped: its {n} x {n} matrices need {memory.gb(need[name])} GB, "
                    f"more than the {memory.gb(budget)} GB training may use; it is for "
                    "catalogs of tens of thousands of items (use itemknn or sasrec)"
                )
                continue
        elif name in ("sasrec", "sasrec_text"):
            need[name] = sasrec_bytes(n, events, sasrec_params or SASRecParams())
            if name == "sasrec_text":  # the frozen text vectors, their gradient path
                need[name] += n * TEXT_DIM_BOUND * 4 * 3
        elif name == "semantic":  # the vectors and one validation batch of scores
            need[name] = n * TEXT_DIM_BOUND * 4 * 2 + validation.BATCH_CELLS * 4 * 2
        kept.append(name)
    # Models run one after another (itemknn, ease, sasrec); the fitted ones are kept until
    # the bundle is written.
    peaks: dict[str, int] = {}
    resident = 0
    for name in (m for m in MODELS if m in kept):
        peaks[name] = base + resident + need[name]
        resident += size.get(name, 0)
        memory.check(
            f"training {name} on {events} events over {n} items",
            peaks[name],
            budget,
            hint="train fewer models (--models), on a smaller log, or raise the budget",
        )
    plan = {
        "budget_gb": memory.gb(budget),
        "estimates_gb": {m: memory.gb(p) for m, p in peaks.items()},
    }
    if skipped:
        plan["skipped"] = skipped
    return kept, plan


def train_retrievers(
    settings: Settings,
    data: TrainingData,
    index: CatalogIndex,
    *,
    models: Sequence[str] = MODELS,
    seed: int = 0,
    max_seconds: float | None = None,
    sasrec_params: Any = None,
    progress: Progress | None = _stderr,
) -> dict[str, Any]:
    """Train, choose on validation, write the bundle; returns its manifest."""
    say = progress or (lambda _msg: None)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise InvalidRequest(f"unknown model(s) {unknown}; train from {MODELS}", param="models")
    models, plan = plan_memory(settings, data, models, sasrec_params)
    for line in plan.get("skipped", {}).values():
        say(line)
    if set(TEXT_MODELS) & set(models):  # the items' text vectors may be written into Chroma
        with index.store.writing():
            pass  # an embedded catalog another process holds open: CatalogBusy now, not later
    started = time.perf_counter()
    train, _, all_targets = data.holdout()
    n = data.n_items
    popularity = np.bincount(data.sequences.items, minlength=n).astype(np.float32)
    # Validation users: all, or a seeded sample; the hybrid is tuned on a sample of those.
    rows = validation.sample(len(train), validation.VALIDATION_USERS, seed)
    val_hist, val_targets = train.take(rows), all_targets[rows]
    hybrid_rows = validation.sample(len(rows), validation.HYBRID_USERS, seed + 1)
    hybrid_targets = val_targets[hybrid_rows]
    say(
        f"train: {data.stats['users']} users, {data.stats['interactions']} interactions, "
        f"{n} items; validating on {len(rows)} of {len(train)} held-out items "
        f"(hybrid on {len(hybrid_rows)}); memory estimate {plan['estimates_gb']} GB of "
        f"{plan['budget_gb']} GB"
    )
    manifest: dict[str, Any] = {
        "version": artifacts.new_version(data.fingerprint()),
        "collection": index.name,
        "catalog_digest": index.metadata.get("genrec_digest"),
        "data": {**data.stats, "fingerprint": data.fingerprint()},
        "seed": seed,
        "validation_users": {"all": len(train), "metrics": len(rows), "hybrid": len(hybrid_rows)},
        "memory": plan,
        "models": {},
    }
    val_pop = np.bincount(train.items, minlength=n).astype(np.float32)
    manifest["popularity"] = {
        "validation": _rounded(validation.popularity_metrics(val_pop, val_hist, val_targets, KS))
    }
    writers: dict[str, Callable[[Path], None]] = {
        "popularity.npy": lambda p: np.save(p, popularity)
    }
    lists: dict[str, list[Scored]] = {}  # member -> per hybrid user: top pool

    def member_lists(found: dict[int, validation.Top]) -> list[Scored]:
        return [[(data.item_ids[i], s) for i, s in found[int(r)]] for r in hybrid_rows]

    for name in (m for m in SCORING if m in models):
        t0 = time.perf_counter()
        cls, params = SCORING[name], SCORING_PARAMS[name]()
        model = cls.fit(train, n, params)
        fit_seconds = time.perf_counter() - t0
        metrics, found = validation.rank_users(
            model,
            val_hist,
            val_targets,
            KS,
            lists_for=hybrid_rows,
            pool=MIN_POOL,
            popularity=popularity,
        )
        lists[name] = member_lists(found)
        del model  # before the final fit: two models of this size are never alive at once
        final = cls.fit(data.sequences, n, params)  # serving knows the latest behaviour
        writers[f"{name}.npz"] = lambda p, m=final: _save_npz(p, m.to_arrays())
        manifest["models"][name] = {
            "kind": "scoring",
            "file": f"{name}.npz",
            "params": asdict(params),
            "validation": _rounded(metrics),
            "seconds": round(time.perf_counter() - t0, 2),
            "fit_seconds": round(fit_seconds, 2),
        }
        if hasattr(final, "neighbours"):
            manifest["models"][name]["neighbours_kept"] = final.neighbours
            manifest["models"][name]["entries"] = int(final.matrix.nnz)
        say(f"{name}: validation NDCG@10 {metrics['ndcg@10']:.4f}")

    text_vectors, held = None, (val_hist, val_targets)
    sasrec_args = {"params": sasrec_params, "seed": seed, "max_seconds": max_seconds, "say": say}
    if any(m in models for m in TEXT_MODELS):
        text_vectors, info = ensure_item_vectors(
            settings, index, settings.item_encoder, data.item_ids, progress=say
        )
        manifest["item_vectors"] = info
    for name in (m for m in ("sasrec", "sasrec_text") if m in models):
        t0 = time.perf_counter()
        model, entry = fit_sasrec(name, train, n, held, settings, text_vectors, **sasrec_args)
        metrics, found = validation.rank_users(
            model, val_hist, val_targets, KS, lists_for=hybrid_rows, pool=MIN_POOL
        )
        lists[name] = member_lists(found)
        writers[f"{name}.pt"] = lambda p, m=model: m.save(p)
        manifest["models"][name] = {
            **entry,
            "validation": _rounded(metrics),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        say(f"{name}: validation NDCG@10 {metrics['ndcg@10']:.4f}")
    if "semantic" in models:
        assert text_vectors is not None
        t0 = time.perf_counter()
        entry, found = fit_semantic(text_vectors, val_hist, val_targets, hybrid_rows)
        lists["semantic"] = member_lists(found)
        manifest["models"]["semantic"] = {
            **entry,
            "vectors": manifest["item_vectors"]["collection"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        say(f"semantic: validation NDCG@10 {entry['validation']['ndcg@10']:.4f}")

    t0 = time.perf_counter()
    hybrid_hist = val_hist.take(hybrid_rows)
    lists["content"] = _content_lists(index, hybrid_hist, data.item_ids)
    content_metrics = _list_metrics(lists["content"], hybrid_targets, data.item_ids)
    manifest["content"] = {"validation": content_metrics}
    for hybrid, members in hybrid_members(list(lists)).items():
        t1 = time.perf_counter()
        chosen = {m: lists[m] for m in members}
        weights, hybrid_metrics = choose_weights(chosen, hybrid_targets, data.item_ids)
        manifest["models"][hybrid] = {
            "kind": "fusion",
            "weights": weights,
            "validation": hybrid_metrics,
            "seconds": round(time.perf_counter() - t1, 2),
        }
        say(f"{hybrid}: weights {weights}, validation NDCG@10 {hybrid_metrics['ndcg@10']:.4f}")

    candidates = {name: m["validation"]["ndcg@10"] for name, m in manifest["models"].items()}
    manifest["default"] = max(candidates, key=lambda name: candidates[name])
    manifest["seconds"] = round(time.perf_counter() - started, 2)

    bundle = artifacts.write_bundle(settings, index.name, manifest, data.item_ids, writers)
    prune(settings, index.name)
    say(f"train: {bundle.path} is current (default retriever: {manifest['default']})")
    return bundle.manifest


def prune(settings: Settings, collection: str) -> None:
    """Remove bundles beyond the kept ones, and the Chroma collections only they name (the item
    vectors of bundles written when SASRec was served from Chroma; a text-vector set the kept
    bundles still read stays)."""
    import json
    import shutil

    def named(path: Path) -> set[str]:
        manifest = path / "manifest.json"
        if not manifest.is_file():
            return set()
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        return {m["vectors"] for m in doc.get("models", {}).values() if m.get("vectors")}

    stale = artifacts.stale_bundles(settings, collection)
    root = artifacts.retrievers_dir(settings, collection)
    kept = [p for p in root.iterdir() if p.is_dir() and p not in stale] if root.is_dir() else []
    in_use = set().union(*(named(p) for p in kept))
    for path in stale:
        try:
            for name in named(path) - in_use:
                ChromaStore(settings, name, model_id="").drop()
        except CatalogBusy:
            continue  # another process holds the embedded catalog: the next run cleans up
        shutil.rmtree(path, ignore_errors=True)


# ---- validation helpers -------------------------------------------------------------------------


def _list_metrics(
    lists: list[Scored], targets: Sequence[int], item_ids: list[str]
) -> dict[str, float]:
    per_user = [
        ranking_metrics([i for i, _ in lists[u]], item_ids[t], KS) for u, t in enumerate(targets)
    ]
    return _rounded({key: mean([m[key] for m in per_user]) or 0.0 for key in per_user[0]})


def _content_lists(
    index: CatalogIndex, histories: Sequence[Sequence[int]], item_ids: list[str]
) -> list[Scored]:
    """One content query per user (so the hybrid is tuned on a sample when there are many)."""
    content = ContentRetriever(index)
    needed = sorted({int(i) for hist in histories for i in hist})
    items = {it.id: it for it in index.get([item_ids[i] for i in needed])}
    out = []
    for hist in histories:
        history = tuple(items[item_ids[i]] for i in hist if item_ids[i] in items)
        got: list[Candidate] = content.retrieve(
            RetrievalQuery(text="", history=history, k=MIN_POOL)
        )
        out.append([(c.item.id, c.score) for c in got])
    return out


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:
        np.savez(f, **arrays)


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in metrics.items()}
