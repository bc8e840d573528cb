"""Evaluation suites: YAML files validated by pydantic; a mistake is reported with its YAML line.

A suite names the dataset and split protocol, a matrix of templates x modes x profiles (a profile
is a named set of Settings overrides, e.g. another model), the candidate count, the K values, the
user sample and its seed, and thresholds that `--check` enforces. See eval/smoke.yaml.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genrec.errors import ConfigError
from genrec.evaluation.yaml_lines import is_union_tag, line_of
from genrec.settings import Mode, Settings

BASELINES = ("popularity", "retrieval", "random")
FAST = ("rank", "likelihood", "describe", "generate")  # the modes, fastest first
_METRIC_RE = re.compile(
    r"^(recall|precision|f1|ndcg|mrr)@\d+$|^candidate_recall$|^top_pick_\w+$"
    r"|^(validity|hallucination|duplicate|in_history|"
    r"outside_candidates|error|empty)_rate$|^(latency_(retrieve|render|llm|ground|total)_p(50|95))$"
    r"|^(prompt|completion)_tokens$"
)


def known_settings(overrides: dict[str, Any]) -> dict[str, Any]:
    """Settings overrides in a suite file, refused when they name no Settings field."""
    if unknown := sorted(set(overrides) - set(Settings.model_fields)):
        raise ValueError(f"unknown settings {unknown}")
    return overrides


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """``queries`` (genrec.evaluation.queryset): ``path`` is the query file and ``catalog`` the
    catalog file, or either the packaged set's name (``zh-shop``)."""

    format: Literal["movielens", "ml-100k", "jsonl", "queries"]
    # folder (movielens, ml-100k), cases file (jsonl) or query file (queries); ~ and $VARS expand
    path: str | None = None
    catalog: str | None = None  # jsonl, queries: the catalog file (JSONL or CSV)
    name: str | None = None  # label for the collection; default from the path
    min_interactions: int = Field(default=5, ge=2)

    @model_validator(mode="after")
    def _paths(self) -> DatasetSpec:
        if self.format == "movielens" and not self.path:
            raise ValueError("a movielens dataset needs `path` (the folder with ratings.csv)")
        if self.format == "jsonl" and not (self.path and self.catalog):
            raise ValueError("a jsonl dataset needs `path` (the cases) and `catalog`")
        if self.format == "queries" and not (self.path and self.catalog):
            raise ValueError("a queries dataset needs `path` (the queries) and `catalog`")
        return self


class ProtocolSpec(_Strict):
    """The split and the sample. ``stated-need`` (genrec.evaluation.statedneed): each (user,
    movie) group of a MovieLens ``tags.csv`` is a case whose query is the user's tags, whose
    history is what they rated before, whose target is the movie; the retrievers learn only from
    users who never tagged; ``part`` picks the validation users' cases (choices) or the others'
    (the report). ``inputs`` runs every LM cell and retrieval baseline once per input. A query
    set (``dataset.format: queries``) runs the queries of its ``split`` (``all``: every one)."""

    split: Literal["test", "validation", "stated-need", "all"] = "test"
    users: int | None = Field(default=None, ge=1)  # sample size (cases); None = every case
    seed: int = 0
    history_len: int = Field(default=20, ge=1, le=200)  # most recent items shown to the LM
    # the cold-item view: cases whose target has at most this many training interactions
    cold_items: int = Field(default=10, ge=0)
    # what a request carries: `history`, `query` (the stated need alone), `both`; a query set's
    # default is `both` (its query and whatever history it has)
    inputs: list[Literal["history", "query", "both"]] = Field(
        default_factory=lambda: ["history"], min_length=1
    )
    tags: str = "tags.csv"  # stated-need: the tags file, relative to dataset.path
    # stated-need: `validation` = the seeded share of tagging users (choices), `report` = the rest
    part: Literal["report", "validation"] = "report"
    validation_share: float = Field(default=0.3, gt=0, lt=1)  # stated-need: of the taggers
    # stated-need: at most this many cases a user (a seeded sample of theirs); None = all
    max_cases_per_user: int | None = Field(default=20, ge=1)
    _plain: str = "history"  # the input ids leave unmarked (a private attribute: Suite sets it)

    @field_validator("inputs")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(v))

    @property
    def multi_input(self) -> bool:
        """Cell and baseline ids carry their input (``@query``) unless it is only the plain one
        (history; a query set's both)."""
        return self.inputs != [self._plain]


class RetrievalSpec(_Strict):
    """Retrievers learned on the split's training part (every interaction before each user's
    target; choices made on the item before it), and the one whose candidates the LM cells
    re-rank (``auto``: the best by validation NDCG@10; ``content`` when nothing is trained)."""

    train: list[Literal["itemknn", "ease", "sasrec", "sasrec_text", "semantic"]] = Field(
        default_factory=list
    )
    retriever: str = "auto"
    max_seconds: float | None = Field(default=None, gt=0)  # SASRec's training budget


class ProfileSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    settings: dict[str, Any] = Field(default_factory=dict)  # Settings overrides

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        return known_settings(v)


class MatrixSpec(_Strict):
    templates: list[str | None] = Field(default_factory=lambda: [None], min_length=1)
    modes: list[Mode] = Field(min_length=1)
    profiles: list[ProfileSpec] = Field(default_factory=lambda: [ProfileSpec(name="default")])
    users: int | None = Field(default=None, ge=1)  # a smaller sample for this block (a prefix)
    # some of the protocol's inputs only (a template that scores the query needs one)
    inputs: list[Literal["history", "query", "both"]] | None = Field(default=None, min_length=1)

    @field_validator("templates")
    @classmethod
    def _default_template(cls, v: list[str | None]) -> list[str | None]:
        # "default" (or null) = the mode's default template
        return [None if t in (None, "default") else t for t in v]


class ThresholdSpec(_Strict):
    metric: str
    min: float | None = None
    max: float | None = None
    cells: str = "*"  # glob over cell ids "{profile}/{mode}/{template}"; "baseline/*" for those

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if not _METRIC_RE.match(v):
            raise ValueError(
                f"unknown metric {v!r}; e.g. recall@10, ndcg@5, mrr@10, candidate_recall, "
                "validity_rate, hallucination_rate, latency_total_p95, prompt_tokens"
            )
        return v

    @model_validator(mode="after")
    def _bound(self) -> ThresholdSpec:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min or max")
        return self


class FidelitySpec(_Strict):
    """The explanation deletion test (genrec.evaluation.fidelity): on the default retriever's
    lists for every user of the sample (``retrieval``), and through each LM cell for the first
    ``users`` of its users (one extra request per cited item, so a smaller sample). The LM's
    sentences (``explain: true``, one more LM call per item) are asked for on the first
    ``sentence_users`` of those (None: all of them). ``k``: the list an LM cell's test recommends
    and checks (None: the suite's ``candidates``; the served default is ``GENREC_K`` = 10)."""

    retrieval: bool = True
    users: int = Field(default=20, ge=0)  # per LM cell; 0 = none
    sentence_users: int | None = Field(default=None, ge=0)
    k: int | None = Field(default=None, ge=1)


class Suite(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dataset: DatasetSpec
    protocol: ProtocolSpec = Field(default_factory=ProtocolSpec, validate_default=True)
    retrieval: RetrievalSpec = Field(default_factory=RetrievalSpec)
    # Settings overrides for the whole run (the index's embedder too); profiles go on top
    settings: dict[str, Any] = Field(default_factory=dict)
    candidates: int = Field(default=20, ge=1, le=200)
    ks: list[int] = Field(default_factory=lambda: [1, 5, 10, 20], min_length=1)
    # blocks, each a templates x modes x profiles; [] = the baselines alone
    matrix: list[MatrixSpec]
    baselines: list[Literal["popularity", "retrieval", "random"]] = Field(
        default_factory=lambda: list(BASELINES)
    )
    concurrency: int = Field(default=4, ge=1, le=256)
    thresholds: list[ThresholdSpec] = Field(default_factory=list)
    fidelity: FidelitySpec | None = None  # the explanation deletion test; None: not run

    # Where the file lives, for resolving relative paths; not part of the YAML.
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        return known_settings(v)

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every K must be >= 1")
        return sorted(set(v))

    @model_validator(mode="after")
    def _stated_need_reads_movielens(self) -> Suite:
        if self.protocol.split == "stated-need" and self.dataset.format != "movielens":
            raise ValueError(
                "protocol.split stated-need reads a MovieLens folder's tags.csv: "
                f"dataset.format must be movielens, not {self.dataset.format}"
            )
        return self

    @field_validator("protocol")
    @classmethod
    def _inputs_fit(cls, proto: ProtocolSpec, info: pydantic.ValidationInfo) -> ProtocolSpec:
        dataset = info.data.get("dataset")  # validated before: it comes first
        queries = dataset is not None and dataset.format == "queries"
        if proto.split == "all" and not queries:
            raise ValueError("split all (every query) is for a queries dataset")
        if not queries and proto.split != "stated-need" and proto.inputs != ["history"]:
            raise ValueError(
                f"inputs {proto.inputs}: only the stated-need split has queries; use [history]"
            )
        if queries:
            proto._plain = "both"
            if "inputs" not in proto.model_fields_set:
                proto.inputs = ["both"]
            if "history" in proto.inputs:
                raise ValueError("a query set's cases are queries: inputs are query and/or both")
        return proto

    @field_validator("matrix")
    @classmethod
    def _block_inputs_run(cls, matrix: list[MatrixSpec], info: pydantic.ValidationInfo) -> list:
        proto = info.data.get("protocol")  # validated before: it comes first
        for b, block in enumerate(matrix):
            if proto and (extra := sorted(set(block.inputs or ()) - set(proto.inputs))):
                raise ValueError(
                    f"block {b}'s inputs {extra} are not among protocol.inputs "
                    f"{proto.inputs}; a block runs some of the protocol's inputs"
                )
        return matrix

    @model_validator(mode="after")
    def _queries_have_no_log(self) -> Suite:
        log_needed = self.retrieval.train or "popularity" in self.baselines
        if self.dataset.format == "queries" and log_needed:
            raise ValueError("a query set has no interactions: no retrieval.train, no popularity")
        return self

    @model_validator(mode="after")
    def _ks_fit(self) -> Suite:
        # The recommender returns `candidates` items; a K beyond that could never be reached.
        if max(self.ks) > self.candidates:
            raise ValueError(
                f"max K ({max(self.ks)}) exceeds candidates ({self.candidates}); "
                "raise candidates or drop the larger K"
            )
        return self

    def cells(self, serves: Callable[[str, str], bool] | None = None) -> list[CellSpec]:
        """The expanded matrix, duplicates removed, in file order. A block's templates x modes
        keeps only the pairs where `serves(template, mode)` (the prompt registry decides); a
        template that serves none of its block's modes is an error."""
        seen: dict[str, CellSpec] = {}
        for b, block in enumerate(self.matrix):
            for template in block.templates:
                modes = block.modes
                if template is not None and serves is not None:
                    modes = [m for m in block.modes if serves(template, m)]
                    if not modes:
                        raise ConfigError(
                            f"matrix.{b}.templates: template {template!r} serves none of the "
                            f"block's modes {block.modes}",
                            param="matrix",
                        )
                for profile in block.profiles:
                    for mode in modes:
                        for inputs in block.inputs or self.protocol.inputs:
                            cell = CellSpec(
                                profile=profile,
                                mode=mode,
                                template=template,
                                users=block.users,
                                inputs=inputs if self.protocol.multi_input else None,
                            )
                            seen.setdefault(cell.id, cell)
        profiles: dict[str, int] = {}
        for c in seen.values():
            profiles.setdefault(c.profile.name, len(profiles))
        # Grouped by profile (one engine each), then by mode; file order otherwise (stable sort).
        return sorted(seen.values(), key=lambda c: (profiles[c.profile.name], FAST.index(c.mode)))

    def path_candidates(self, value: str) -> list[Path]:
        """Where a suite path may be, in the order tried, as absolute normalised paths: ~ and
        $VARS expanded; a relative path against the working directory, then the suite's folder,
        then the repository root (the suite folder's parent), so `eval/x.yaml` finds
        `../shared/...` whatever the working directory."""
        p = Path(os.path.expandvars(os.path.expanduser(value)))
        tried = [p]
        if not p.is_absolute() and self.source is not None:
            folder = Path(os.path.abspath(self.source)).parent
            tried += [folder / p, folder.parent / p]
        return list(dict.fromkeys(Path(os.path.abspath(c)) for c in tried))

    def resolve_path(self, value: str) -> Path:
        """The first of `path_candidates` that exists, else the first one (the caller reports
        its absence, listing `path_candidates` as what was tried)."""
        tried = self.path_candidates(value)
        return next((c for c in tried if c.exists()), tried[0])


class CellSpec(BaseModel):
    profile: ProfileSpec
    mode: Mode
    template: str | None
    users: int | None = None
    inputs: Literal["history", "query", "both"] | None = None  # None: history, unmarked

    @property
    def id(self) -> str:
        return f"{self.base_id}{input_suffix(self.inputs)}"

    @property
    def base_id(self) -> str:
        """The id without the input: the same cell over another input shares it."""
        return f"{self.profile.name}/{self.mode}/{self.template or 'default'}"


def input_suffix(inputs: str | None) -> str:
    return f"@{inputs}" if inputs else ""


def matches(pattern: str, cell_id: str) -> bool:
    """Glob match; baselines match only patterns that name them ("baseline/..."), so a
    threshold over "*" means every LM cell."""
    if cell_id.startswith("baseline/") and not pattern.startswith("baseline"):
        return False
    return fnmatch.fnmatchcase(cell_id, pattern)


# ---- loading with line numbers -----------------------------------------------------------------


def load_suite(path: str | Path) -> Suite:
    """Parse and validate a suite file; ConfigError says which line is wrong and why."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}", param="suite")
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}", param="suite") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a suite is a YAML mapping", param="suite")
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if not is_union_tag(p)]
            line = line_of(node, loc)
            dotted = ".".join(str(p) for p in loc) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{path}:{line}: {dotted}: {msg}")
        raise ConfigError("invalid suite\n  " + "\n  ".join(lines), param="suite") from None
    suite.source = path.resolve()
    return suite
