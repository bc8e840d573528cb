"""The optional sentence per item (``explain: true``): written by the LM, grounded like every
other output.

The LM does not write free text (a 135M model's free explanation is fluent and often false):
``prompts/explain_sentence.j2`` turns the item's evidence into a few sentences that name only the
item and the titles of its own evidence, and the LM writes one of them, constrained to exactly
those strings (vLLM structured outputs, :class:`genrec.engines.base.Choice`). What comes back is
checked again (a remote engine may ignore a constraint): a sentence that is not one of the
options is dropped, never shown. The calls for one answer's items run concurrently (the engine
batches them); their tokens join the request's usage and their time its ``llm`` stage.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from genrec.engines.base import Choice, EngineRequest
from genrec.errors import ConfigError
from genrec.explain.reasons import language
from genrec.modes.base import Job
from genrec.schema import RecommendedItem, Usage

TEMPLATE = "explain_sentence.j2"
MAX_TITLE = 80  # characters of a title inside a sentence


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1] + "…"


@lru_cache(maxsize=1)
def _macros() -> Any:
    for folder in _folders():
        if (folder / TEMPLATE).is_file():
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(str(folder)),
                undefined=jinja2.StrictUndefined,
                autoescape=False,
            )
            return env.get_template(TEMPLATE).make_module({})
    raise ConfigError(f"prompts/{TEMPLATE} is missing from the genrec installation")


def _folders() -> list[Path]:
    try:
        packaged = [Path(str(importlib.resources.files("genrec.prompt_templates")))]
    except ModuleNotFoundError:
        packaged = []
    return [*packaged, Path(__file__).resolve().parents[2] / "prompts"]


def options(item: RecommendedItem, lang: str) -> tuple[list[str], str]:
    """(the sentences the LM may write for ``item``, the prompt's user message)."""
    titles = [_one_line(e.title) for e in item.because if e.kind in ("history", "user") and e.title]
    terms = [_one_line(t) for e in item.because if e.kind == "query" for t in (e.terms or [])]
    kinds = sorted({e.kind for e in item.because})
    args = (_one_line(item.title), titles[:2], terms[:3], kinds, lang)
    m = _macros()
    lines = [s.strip() for s in str(m.options(*args)).splitlines()]
    opts = list(dict.fromkeys(s for s in lines if s))
    return opts, str(m.prompt(*args, opts))


async def sentences(job: Job, items: list[RecommendedItem], usage: Usage) -> list[RecommendedItem]:
    """``items`` with ``explanation`` set (None where the engine's answer was not an option);
    the calls' tokens are added to ``usage``."""
    lang = language([job.plan.request.query or "", *(it.title for it in items)])

    async def one(item: RecommendedItem) -> RecommendedItem:
        opts, message = options(item, lang)
        if len(opts) == 1:  # nothing to choose: the one sentence the evidence allows
            return item.model_copy(update={"explanation": opts[0]})
        prompt = job.tokenizer.chat_prompt([{"role": "user", "content": message}])
        longest = max(job.tokenizer.count(o) for o in opts)
        done = await job.engine.complete(
            EngineRequest(
                prompt,
                max_tokens=longest + 2,
                temperature=job.plan.request.temperature,
                seed=job.plan.request.seed,
                constraint=Choice(tuple(opts)),
            )
        )
        usage.prompt_tokens += done.prompt_tokens
        usage.completion_tokens += done.completion_tokens
        usage.cached_tokens += done.cached_tokens
        text = done.text.strip()
        return item.model_copy(update={"explanation": text if text in opts else None})

    return list(await asyncio.gather(*(one(it) for it in items)))


def names_outside(sentence: str, item: RecommendedItem, others: list[str]) -> list[str]:
    """The titles among ``others`` (e.g. the candidates' and the history's) that ``sentence``
    names although they are neither the item nor in its evidence (the eval's check; 0 by
    construction when the engine honours the constraint). The allowed titles are taken out
    first and a title counts only as whole words, so "Blade" is not found in "Blade: Trinity"."""
    allowed = {_one_line(t) for t in (item.title, *(e.title for e in item.because)) if t}
    rest = sentence
    for title in sorted(allowed, key=len, reverse=True):  # "Blade: Trinity" before "Blade"
        rest = rest.replace(title, "\x00")
    found = []
    for title in dict.fromkeys(_one_line(t) for t in others if t):
        if title not in allowed and re.search(rf"(?<!\w){re.escape(title)}(?!\w)", rest):
            found.append(title)
    return found
