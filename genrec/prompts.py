"""Prompt templates: load, list, validate and render them into the one string the LM receives.

A template is a Jinja2 file in ``prompts/`` (shipped as ``genrec.prompt_templates``; a user folder,
``GENREC_PROMPTS_DIR``, adds templates or overrides packaged ones by name). It starts with a YAML
front-matter block in a Jinja comment and defines a ``system`` and a ``user`` block::

    {#---
    name: rank_default            # must equal the file name
    description: one line
    modes: [rank]                 # the decoding modes it serves
    labels: letters               # candidate labels: letters (A, B, ...) or numbers (1, 2, ...)
    version: 1
    default_for: [rank]           # optional: the mode(s) it is the default template of
    answer_prefix: ""             # optional: text the assistant turn starts with
    scores: item                  # likelihood: item, or query (the item block is its prompt)
    ---#}
    {% block system %}...{% endblock %}
    {% block user %}...{% endblock %}
    {% block item %}...{% endblock %}  # likelihood templates: one candidate's scored text (``c``)

Templates run in Jinja's immutable sandbox with ``StrictUndefined`` (a misspelt variable fails
loudly). They receive ``query``, ``history`` (items, oldest first), ``candidates`` (items with a
``label``), ``k``, ``n``, ``mode``, ``labels``, ``first_label``, ``last_label``, ``item_kind`` and
``system`` (the caller's system message, for the template's delimited system slot). Every item field
and the caller's text are cleaned before a template sees them: control characters and line breaks
become spaces, chat-template control tokens such as ``<|im_end|>`` are removed, double quotes become
single quotes, and lengths are capped. Catalog text stays data: it can neither break out of its
quotes nor widen what the output may be (output constraints come from the candidates, not text).
"""

from __future__ import annotations

import importlib.resources
import re
import string
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genrec.data.item import Item
from genrec.errors import ConfigError, InvalidRequest, NotFound, PromptTooLong
from genrec.settings import Mode, Settings
from genrec.tokenizer import ChatTokenizer

MODES: tuple[Mode, ...] = get_args(Mode)
LabelStyle = Literal["letters", "numbers"]
LETTERS = list(string.ascii_uppercase + string.ascii_lowercase)  # 52 single-token labels
TITLE_CAP = 120
QUERY_CAP = 1000
SYSTEM_CAP = 1000
_FRONT = re.compile(r"\A\{#---\s*\n(.*?)\n---#\}[ \t]*\n?", re.DOTALL)
_CONTROL_TOKEN = re.compile(r"<\|[^|<>]{0,40}\|>|<\/?s>|\[/?INST\]")
_SPACES = re.compile(r"\s+")
_NOT_MINE = ("response", "explain")  # the HTTP answer (response*.j2) and genrec.explain's sentence


class TemplateMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str
    modes: list[Mode] = Field(min_length=1)
    labels: LabelStyle = "letters"
    version: str
    default_for: list[Mode] = Field(default_factory=list)
    answer_prefix: str = ""
    scores: Literal["item", "query"] = "item"  # likelihood: what is scored (docstring above)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, v: Any) -> str:
        return str(v)


@dataclass
class PromptTemplate:
    meta: TemplateMeta
    source: str  # the whole file
    path: str
    origin: Literal["packaged", "user"]
    compiled: Any = field(repr=False, default=None)

    @property
    def name(self) -> str:
        return self.meta.name

    def serves(self, mode: str) -> bool:
        return mode in self.meta.modes

    @property
    def variables(self) -> set[str]:
        """The context variables the template reads (e.g. whether it states a need at all)."""
        from jinja2 import meta

        return set(meta.find_undeclared_variables(_environment().parse(self.source)))

    def has_block(self, name: str) -> bool:
        return name in self.compiled.blocks

    def summary(self) -> dict[str, Any]:
        return {**self.meta.model_dump(), "path": self.path, "origin": self.origin}


@dataclass(frozen=True)
class ItemView:
    """What a template sees of an item: cleaned, capped strings."""

    id: str
    title: str
    year: str
    genres: str
    label: str = ""


@dataclass
class RenderedPrompt:
    template: str
    mode: Mode
    messages: list[dict[str, str]]
    prompt: str  # the final string the LM receives (chat template applied, answer prefix added)
    labels: list[str]
    titles: list[str]  # the candidates' titles as the prompt shows them (unique)
    prompt_tokens: int
    items: list[str] = field(default_factory=list)  # per candidate, the ``item`` block's text


# ---------------------------------------------------------------------------------- cleaning


def clean_text(text: Any, limit: int) -> str:
    """One line of plain data text: no control characters or line breaks, no chat control
    tokens, no double quotes (so a quoted value cannot be closed early), at most ``limit`` chars."""
    s = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in str(text)
    )
    s = _CONTROL_TOKEN.sub(" ", s)
    s = s.replace('"', "'").replace("`", "'").replace("<<<", "< <").replace(">>>", "> >")
    s = _SPACES.sub(" ", s).strip()
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return s


def item_view(item: Item, label: str = "") -> ItemView:
    year = item.attributes.get("year", "")
    return ItemView(
        id=clean_text(item.id, 64),
        title=clean_text(item.title, TITLE_CAP) or "untitled",
        year=clean_text(year, 8) if year not in (None, "") else "",
        genres=clean_text(", ".join(item.tags), 120),
        label=label,
    )


def labels_for(style: LabelStyle, n: int) -> list[str]:
    if style == "letters":
        if n > len(LETTERS):
            raise InvalidRequest(
                f"a letters template labels at most {len(LETTERS)} candidates; ask for fewer",
                param="candidates",
            )
        return LETTERS[:n]
    return [str(i) for i in range(1, n + 1)]


def unique_titles(views: list[ItemView]) -> list[str]:
    """The candidates' shown titles, made unique (the output constraint needs one string per
    candidate): a repeated title gets its year, then a counter."""
    counts = Counter(v.title for v in views)
    out: list[str] = []
    seen: set[str] = set()
    for v in views:
        t = v.title
        if counts[t] > 1 and v.year:
            t = f"{t} ({v.year})"
        base, i = t, 2
        while t in seen:
            t, i = f"{base} #{i}", i + 1
        seen.add(t)
        out.append(t)
    return out


# ---------------------------------------------------------------------------------- registry


def _environment() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def parse_template(source: str, path: str, origin: Literal["packaged", "user"]) -> PromptTemplate:
    """Read and compile one template file; ConfigError says what is wrong and where."""
    m = _FRONT.match(source)
    if not m:
        raise ConfigError(f"{path}: no front matter: start the file with a {{#--- ... ---#}} block")
    try:
        meta = TemplateMeta.model_validate(yaml.safe_load(m.group(1)) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"{path}: bad front matter: {exc}") from exc
    stem = Path(path).name.removesuffix(".j2")
    if meta.name != stem:
        raise ConfigError(f"{path}: front-matter name {meta.name!r} must equal the file name")
    try:
        compiled = _environment().from_string(source)
    except TemplateError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if "user" not in compiled.blocks:
        raise ConfigError(f"{path}: defines no {{% block user %}}")
    return PromptTemplate(meta=meta, source=source, path=path, origin=origin, compiled=compiled)


class PromptRegistry:
    """The templates genrec knows: the packaged ones plus the user's folder (which wins)."""

    def __init__(self, settings: Settings | None = None, *, user_dir: Path | None = None) -> None:
        self.templates: dict[str, PromptTemplate] = {}
        self.errors: list[str] = []
        for path, text in _packaged_sources():
            self._add(text, path, "packaged")
        folder = user_dir or (settings.prompts_dir if settings else None)
        if folder is not None:
            folder = Path(folder).expanduser()
            if not folder.is_dir():
                raise ConfigError(f"prompts folder {folder} does not exist (GENREC_PROMPTS_DIR)")
            for p in sorted(folder.glob("*.j2")):
                if not p.name.startswith(_NOT_MINE):
                    self._add(p.read_text(encoding="utf-8"), str(p), "user")
        for mode in MODES:
            if not any(mode in t.meta.default_for for t in self.templates.values()):
                if not any(t.serves(mode) for t in self.templates.values()):
                    self.errors.append(f"no template serves mode {mode!r}")

    def _add(self, text: str, path: str, origin: Literal["packaged", "user"]) -> None:
        try:
            tpl = parse_template(text, path, origin)
        except ConfigError as exc:
            if origin == "user":
                raise
            self.errors.append(exc.message)
            return
        self.templates[tpl.name] = tpl

    def names(self) -> list[str]:
        return sorted(self.templates)

    def list(self) -> list[PromptTemplate]:
        return [self.templates[n] for n in self.names()]

    def get(self, name: str) -> PromptTemplate:
        try:
            return self.templates[name]
        except KeyError:
            raise NotFound(
                f"unknown template {name!r}; known: {', '.join(self.names())}", param="template"
            ) from None

    def default_for(self, mode: Mode) -> PromptTemplate:
        marked = [t for t in self.list() if mode in t.meta.default_for]
        serving = [t for t in self.list() if t.serves(mode)]
        if not (marked or serving):
            raise ConfigError(f"no prompt template serves mode {mode!r}")
        # A user template marked default wins over the packaged default.
        marked.sort(key=lambda t: t.origin != "user")
        return (marked or serving)[0]

    def for_request(self, name: str | None, mode: Mode) -> PromptTemplate:
        if mode not in MODES:
            raise InvalidRequest(f"unknown mode {mode!r}; use one of {MODES}", param="mode")
        if name is None:
            return self.default_for(mode)
        tpl = self.get(name)
        if not tpl.serves(mode):
            raise InvalidRequest(
                f"template {name!r} serves {', '.join(tpl.meta.modes)}, not {mode!r}; "
                f"templates for {mode}: {', '.join(t.name for t in self.list() if t.serves(mode))}",
                param="template",
            )
        return tpl


def _packaged_sources() -> list[tuple[str, str]]:
    root = importlib.resources.files("genrec.prompt_templates")
    out = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".j2") and not entry.name.startswith(_NOT_MINE):
            out.append((str(entry), entry.read_text(encoding="utf-8")))
    return out


# ---------------------------------------------------------------------------------- rendering


def render(
    template: PromptTemplate,
    tokenizer: ChatTokenizer,
    *,
    mode: Mode,
    candidates: list[Item],
    history: list[Item] = (),  # type: ignore[assignment]
    query: str | None = None,
    k: int,
    system: str | None = None,
    item_kind: str | None = None,
    max_prompt_tokens: int | None = None,
) -> RenderedPrompt:
    """Messages from the template, then the model's chat template: the exact LM input."""
    labels = labels_for(template.meta.labels, len(candidates))
    cands = [item_view(c, lab) for c, lab in zip(candidates, labels, strict=True)]
    titles = unique_titles(cands)
    cands = [
        ItemView(id=v.id, title=t, year=v.year, genres=v.genres, label=v.label)
        for v, t in zip(cands, titles, strict=True)
    ]
    hist = [item_view(h) for h in history]
    ctx = {
        "mode": mode,
        "query": clean_text(query, QUERY_CAP) if query and query.strip() else None,
        "history": hist,
        "candidates": cands,
        "k": k,
        "n": len(cands),
        "labels": labels,
        "first_label": labels[0] if labels else "",
        "last_label": labels[-1] if labels else "",
        "item_kind": clean_text(item_kind, 30) if item_kind else infer_item_kind([*candidates]),
        "system": clean_text(system, SYSTEM_CAP) if system and system.strip() else None,
    }
    try:
        compiled = template.compiled
        parts = {
            name: "".join(compiled.blocks[name](compiled.new_context(ctx))).strip()
            for name in ("system", "user")
            if name in compiled.blocks
        }
    except TemplateError as exc:
        raise ConfigError(f"template {template.name!r} failed to render: {exc}") from exc
    items = []
    if "item" in compiled.blocks:
        try:
            items = [
                "".join(compiled.blocks["item"](compiled.new_context({**ctx, "c": c}))).strip()
                for c in cands
            ]
        except TemplateError as exc:
            raise ConfigError(f"template {template.name!r} failed to render: {exc}") from exc
    messages = [{"role": "system", "content": parts["system"]}] if parts.get("system") else []
    messages.append({"role": "user", "content": parts["user"]})
    prompt = tokenizer.chat_prompt(messages) + template.meta.answer_prefix
    n_tokens = tokenizer.count(prompt)
    if max_prompt_tokens is not None and n_tokens > max_prompt_tokens:
        raise PromptTooLong(
            f"the rendered prompt has {n_tokens} tokens but at most {max_prompt_tokens} fit the "
            f"model's context with room for the answer; send a shorter {_biggest(ctx)} "
            "(or fewer candidates)",
            param=_biggest(ctx),
        )
    return RenderedPrompt(
        template=template.name,
        mode=mode,
        messages=messages,
        prompt=prompt,
        labels=labels,
        titles=titles,
        prompt_tokens=n_tokens,
        items=items,
    )


def _biggest(ctx: dict[str, Any]) -> str:
    """The request field that contributes most text, to name in a too-long error."""
    sizes = {
        "history": sum(len(h.title) + len(h.genres) + 8 for h in ctx["history"]),
        "candidates": sum(len(c.title) + len(c.genres) + 8 for c in ctx["candidates"]),
        "query": len(ctx["query"] or ""),
        "system": len(ctx["system"] or ""),
    }
    return max(sizes, key=lambda k: sizes[k])


def infer_item_kind(items: list[Item], collection: str | None = None) -> str:
    """What the items are, for the prompt: their one shared category, else "movie" for a
    MovieLens collection (``ml-*``), else "item"."""
    cats = {i.category.strip().lower() for i in items if i.category.strip()}
    if len(cats) == 1:
        return clean_text(cats.pop(), 30)
    name = (collection or "").lower()
    return "movie" if (name.startswith("ml-") or "movielens" in name) else "item"
