"""Preparing a suite run: everything that can fail cheaply, before any engine work.

``prepare`` reads, filters and splits the dataset, samples the users (a seeded shuffle, so any
prefix is a random sample), checks every template against the prompt registry and every profile
against Settings, and fingerprints each cell (what its per-request records depend on).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.data.item import id_key
from genrec.engines import engine_identity
from genrec.errors import CatalogError, ConfigError
from genrec.evaluation.datasets import EvalDataset, NeedOptions, load_eval_dataset
from genrec.evaluation.queryset import packaged_file
from genrec.evaluation.splits import EvalCase
from genrec.evaluation.suite import CellSpec, Suite
from genrec.settings import Settings


@dataclass
class RunOptions:
    out: Path
    limit: int | None = None  # at most this many users (a prefix of the seeded sample)
    cache_dir: Path | None = None  # None: no cache
    concurrency: int | None = None  # overrides the suite's
    data: Path | None = None  # overrides dataset.path
    compare_to: Path | None = None  # a previous results.json
    fresh: bool = False  # discard this out dir's per-request records first
    report_only: bool = False  # no requests: report what the out dir holds
    progress: bool = True


@dataclass
class PreparedCell:
    spec: CellSpec
    settings: Settings
    cases: list[EvalCase]
    fingerprint: dict

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def slug(self) -> str:
        return self.id.replace("/", "__")


@dataclass
class Prepared:
    suite: Suite
    dataset: EvalDataset
    cases: list[EvalCase]  # the sample, in evaluation order
    cells: list[PreparedCell]
    collection: str
    options: RunOptions
    users_available: int = 0
    previous: dict | None = None
    notes: list[str] = field(default_factory=list)


# ---- prepare: everything that can fail before engine work --------------------------------------


def sample_cases(cases: Sequence[EvalCase], size: int | None, seed: int) -> list[EvalCase]:
    """A seeded random order of all users, cut to `size`: any prefix is itself a random sample,
    so --limit and smaller matrix blocks take prefixes of one list."""
    ordered = sorted(cases, key=lambda c: id_key(c.user_id))
    random.Random(seed).shuffle(ordered)
    return ordered[:size] if size is not None else ordered


def profile_settings(base: Settings, overrides: dict[str, Any]) -> Settings:
    if not overrides:
        return base
    try:
        return Settings(**{**base.model_dump(), **overrides})
    except ValueError as exc:
        raise ConfigError(f"bad profile settings {overrides}: {exc}", param="profiles") from None


def collection_name(dataset: EvalDataset, min_interactions: int | None) -> str:
    """``eval-NAME-Kcore``; a query set's (no filter) ``eval-NAME``, which its suites share."""
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in dataset.name).strip("-._")
    return f"eval-{safe or 'data'}" + (f"-{min_interactions}core" if min_interactions else "")


def suite_settings(suite: Suite, settings: Settings) -> Settings:
    """``settings`` with the suite's own overrides: what the index and every profile start from."""
    return settings.model_copy(update=suite.settings) if suite.settings else settings


def prepare(suite: Suite, settings: Settings, options: RunOptions) -> Prepared:
    spec = suite.dataset
    settings = suite_settings(suite, settings)
    queries = spec.format == "queries"

    def where(value: str, part: int) -> Path:  # a query set's packaged name, else a path
        return (packaged_file(value, part) if queries else None) or suite.resolve_path(value)

    path = options.data or (where(spec.path, 1) if spec.path else None)
    catalog = where(spec.catalog, 0) if spec.catalog else None
    if path is not None and not path.exists():
        tried = [path] if options.data else suite.path_candidates(spec.path)
        raise CatalogError(
            f"dataset path {path if options.data else spec.path} does not exist (tried "
            f"{', '.join(map(str, tried))}); give the folder with --data or fix "
            f"dataset.path in {suite.source}",
            param="dataset.path",
        )
    proto = suite.protocol
    need = None
    if proto.split == "stated-need" and path is not None:
        need = NeedOptions(
            tags=path / proto.tags,
            part=proto.part,
            seed=proto.seed,
            validation_share=proto.validation_share,
            max_cases_per_user=proto.max_cases_per_user,
        )
    dataset = load_eval_dataset(
        spec.format,
        path=path,
        catalog=catalog,
        name=spec.name,
        min_interactions=spec.min_interactions,
        split=proto.split,
        need=need,
    )
    if suite.candidates > len(dataset.items):
        raise ConfigError(
            f"candidates ({suite.candidates}) exceeds the {len(dataset.items)} items left after "
            "filtering",
            param="candidates",
        )
    available = len(dataset.cases)
    size = suite.protocol.users
    if size is not None and size > available:
        raise ConfigError(
            f"protocol.users is {size} but only {available} users are left after filtering",
            param="protocol.users",
        )
    if options.limit is not None:
        size = min(size or available, options.limit)
    cases = sample_cases(dataset.cases, size, suite.protocol.seed)

    registry, serves = template_checker(settings)
    cells = []
    for spec_cell in suite.cells(serves):
        # The LM sees the protocol's most recent history items; retrievers see them all.
        overrides = {"prompt_history": suite.protocol.history_len, **spec_cell.profile.settings}
        s = profile_settings(settings, overrides)
        n = min(spec_cell.users or len(cases), len(cases))
        template = _template_digest(registry, spec_cell.template, spec_cell.mode)
        fingerprint = _fingerprint(suite, dataset, spec_cell, s, template)
        cells.append(PreparedCell(spec_cell, s, cases[:n], fingerprint))
    previous = None
    if options.compare_to is not None:
        try:
            previous = json.loads(Path(options.compare_to).read_text(encoding="utf-8"))
            previous["protocol"]  # noqa: B018 - a results.json has one
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"--compare {options.compare_to}: not a readable results.json ({exc})",
                param="compare",
            ) from None
    return Prepared(
        suite,
        dataset,
        cases,
        cells,
        collection_name(dataset, None if queries else spec.min_interactions),
        options,
        users_available=available,
        previous=previous,
    )


def template_checker(settings: Settings) -> tuple[Any, Callable[[str, str], bool]]:
    """The prompt registry, and a `serves(template, mode)` that fails on unknown templates."""
    from genrec.prompts import PromptRegistry

    registry = PromptRegistry(settings)

    def serves(name: str, mode: str) -> bool:
        if name not in registry.templates:
            raise ConfigError(
                f"matrix.templates: unknown template {name!r}; known: "
                f"{', '.join(registry.names())}",
                param="matrix.templates",
            )
        return registry.get(name).serves(mode)

    return registry, serves


def _template_digest(registry: Any, name: str | None, mode: str) -> dict:
    tpl = registry.for_request(name, mode)
    return {"name": tpl.name, "sha1": hashlib.sha1(tpl.source.encode()).hexdigest()[:12]}


def _fingerprint(
    suite: Suite, ds: EvalDataset, cell: CellSpec, s: Settings, template: dict
) -> dict:
    """What the per-request records of a cell depend on; resuming needs all of it unchanged."""
    fp = {
        "dataset": [suite.dataset.format, ds.source, suite.dataset.min_interactions],
        "split": suite.protocol.split,
        "history_len": suite.protocol.history_len,
        "retrieval": suite.retrieval.model_dump(),
        "candidates": suite.candidates,
        "cell": cell.id,
        "profile": cell.profile.settings,
        "engine": engine_identity(s),
        "max_new_tokens": s.max_new_tokens,
        "template": template,
    }
    if suite.settings:  # only then, so earlier runs' records stay resumable
        fp["settings"] = suite.settings
    p = suite.protocol
    if p.split == "stated-need":  # only then, so earlier runs' records stay resumable
        fp["stated_need"] = [p.tags, p.part, p.seed, p.validation_share, p.max_cases_per_user]
    return fp
