"""likelihood: every candidate scored by how likely the LM finds its description after the need.

genrec's method states a recommendation as text generation: item i's score is the LM's
probability of its description y_i given the user's need X. The template states the need (its
system and user turns: the history and/or the query) and renders each candidate's description
(its ``item`` block: the title, optionally the genres); the engine returns the log-probability of
each token of y_i read after the prompt (vLLM prompt log-probabilities, a :class:`Continuation`).
One engine request per candidate: the first puts the shared prompt into vLLM's prefix cache, the
others then go together, so they batch and each prefills little more than its own text.

Calibration (``settings.likelihood_score``; unset, a likelihood-tuned model's manifest's choice):

- ``sum``: log p(y|X), which favours short titles;
- ``mean``: the mean per-token log-probability, which removes the length effect;
- ``pmi``: mean log p(y|X) - mean log p(y|X0), where X0 is the same template with no need stated
  (domain-conditional PMI, Holtzman et al. 2021): a title the model finds likely whatever the user
  said gains nothing from that. The unconditional term depends only on the model, the template's
  framing and the item text, so it is computed once per item and kept (per process; the eval's
  engine cache keeps it across runs); a changed title, template or model is another key.

Each candidate is scored on its own, so there is no position bias by construction.

Query likelihood (a template with ``scores: query``): the other direction, p(query | item_i).
Each candidate's ``item`` block is its own prompt (the user turn, in the model's chat template,
then the template's answer prefix) and the user's query is the text scored after it: how likely
the LM finds the words the user wrote, said of this item (Sachan et al. 2022's zero-shot
re-ranking by question likelihood). Every candidate is scored on the same tokens, so the score
needs no calibration for length or title fluency: its mean log-probability (a prior term would be
the same for every candidate). It reads the query only: fuse it with the retriever, which reads
the history. On the stated-need protocol its cells are the only LM cells at or above the
retrieval order, within noise, where the need-first direction falls below it (eval/README.md).

Cost: vLLM's prefix cache reuses whole KV blocks (``PREFIX_BLOCK`` tokens), so after the first
request every candidate recomputes the prompt's last partial block before its own text. With
``settings.likelihood_align`` (off by default: it costs validation NDCG, see the README) the
prompt is left-padded with document separators
(``ChatTokenizer.separator``: tokens the model saw between pretraining documents, no words) to
one token past a whole number of blocks: each candidate then recomputes one prompt token (whose
logits give its text's first log-probability; a fully cached prompt would give none).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from genrec.engines.base import PREFIX_BLOCK, Engine, EngineRequest, EngineResult
from genrec.errors import InvalidRequest, PromptTooLong
from genrec.grounding import Grounded, Match
from genrec.modes.base import Decoded, Job, Picks, Plan, add_usage
from genrec.prompts import QUERY_CAP, clean_text

if TYPE_CHECKING:
    from genrec.prompts import PromptTemplate, RenderedPrompt
    from genrec.tokenizer import ChatTokenizer

NEED_SLOTS = frozenset({"history", "query"})
_PRIOR_CACHE_SIZE = 100_000


async def score_texts(engine: Engine, prompt: str, texts: Sequence[str]) -> list[EngineResult]:
    """Each text's token log-probabilities after ``prompt``, in order."""
    return await score_pairs(engine, [(prompt, t) for t in texts])


async def score_pairs(engine: Engine, pairs: Sequence[tuple[str, str]]) -> list[EngineResult]:
    """Each (prompt, text)'s token log-probabilities of the text, in order. The first request
    runs alone so the prompts' shared KV blocks are cached before the others arrive together."""
    if not pairs:
        return []
    first = await engine.complete(EngineRequest.continuation(*pairs[0]))
    rest = await asyncio.gather(
        *(engine.complete(EngineRequest.continuation(p, t)) for p, t in pairs[1:])
    )
    return [first, *rest]


def scored_texts(rendered: RenderedPrompt) -> list[str]:
    """Exactly what is scored after the prompt for each candidate: the template's ``item``
    text, starting a new token (after a prompt that ends mid-line, with a space)."""
    lead = "" if rendered.prompt[-1:].isspace() else " "
    return [lead + t for t in rendered.items]


def query_prompts(
    rendered: RenderedPrompt, template: PromptTemplate, tokenizer: ChatTokenizer, query: str
) -> tuple[list[str], str]:
    """Query likelihood's engine input: each candidate's prompt (its ``item`` block as the user
    turn, after the template's system turn if any, then the answer prefix) and the query text
    scored after every one of them."""
    system = [m for m in rendered.messages if m["role"] == "system"]
    prefix = template.meta.answer_prefix
    prompts = [
        tokenizer.chat_prompt([*system, {"role": "user", "content": turn}]) + prefix
        for turn in rendered.items
    ]
    lead = "" if prompts and prompts[0][-1:].isspace() else " "
    return prompts, lead + clean_text(query, QUERY_CAP)


def aligned_prompt(
    prompt: str, n_tokens: int, tokenizer: ChatTokenizer, align: bool
) -> tuple[str, int]:
    """(the prompt left-padded to 1 token past a whole number of cache blocks, the padding's
    tokens); unchanged when ``align`` is off or the tokenizer has no separator."""
    separator = tokenizer.separator if align else None
    if separator is None:
        return prompt, 0
    pad = (1 - n_tokens) % PREFIX_BLOCK
    return separator * pad + prompt, pad


def mean_logprob(result: EngineResult) -> float:
    return calibrate("mean", result.token_logprobs, 0.0)


def calibrate(how: str, logprobs: Sequence[float], prior: float) -> float:
    """A candidate's score from its text's token log-probabilities after the need: ``sum``,
    ``mean``, or ``pmi`` (the mean less ``prior``, the text's mean log-probability with no need
    stated). The fine-tuning trainer validates with this same function."""
    if how == "sum":
        return sum(logprobs)
    mean = sum(logprobs) / len(logprobs) if logprobs else float("-inf")
    return mean if how == "mean" else mean - prior


def check_template(template: PromptTemplate) -> None:
    """A likelihood template renders each candidate's text (an ``item`` block) after a prompt
    that states the need (it reads the history or the query)."""
    if not template.has_block("item"):
        raise InvalidRequest(
            f"template {template.name!r} has no {{% block item %}}: likelihood mode scores "
            "the text that block renders for each candidate",
            param="template",
        )
    if template.meta.scores == "query":
        return  # the need is the scored text itself
    if not template.variables & NEED_SLOTS:
        raise InvalidRequest(
            f"template {template.name!r} states no need (it reads neither `history` nor "
            "`query`), so every candidate would get the same score whatever the user wants",
            param="template",
        )


class LikelihoodMode:
    name = "likelihood"

    def __init__(self) -> None:
        # (model, unconditional prompt, text) -> mean log p(text | X0); least recently used out
        self._prior: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def check(self, plan: Plan) -> None:
        check_template(plan.template)
        query = plan.request.query
        if plan.template.meta.scores == "query" and not (query and query.strip()):
            raise InvalidRequest(
                f"template {plan.template.name!r} scores the query after each candidate "
                "(query likelihood), and this request states none: send a query, or use a "
                "template that scores the candidates' text (likelihood_need)",
                param="query",
            )

    def answer_room(self, plan: Plan, candidates: list) -> int:
        return 1  # one token is generated; each candidate's own text is checked in decode

    async def decode(self, job: Job) -> Decoded:
        if job.plan.template.meta.scores == "query":
            return await self._decode_query(job)
        plan, rendered = job.plan, job.rendered
        align = plan.settings.likelihood_align
        prompt, pad = aligned_prompt(rendered.prompt, rendered.prompt_tokens, job.tokenizer, align)
        texts = self._texts(job, pad)
        decoded = Decoded(outputs=[], score_is_log=True)  # fused as a log-score, not a probability
        conditional, prior = await asyncio.gather(
            score_texts(job.engine, prompt, texts), self._priors(job, texts, decoded)
        )
        for result in conditional:
            add_usage(decoded, result)
        how = plan.settings.likelihood_score or "pmi"  # the Recommender resolves None
        pairs = zip(conditional, prior, strict=True)
        scores = [calibrate(how, result.token_logprobs, p) for result, p in pairs]
        # Stable sort: equal scores keep the retriever's order.
        order = sorted(range(len(texts)), key=lambda i: -scores[i])
        decoded.ranked = [(i, scores[i]) for i in order]
        decoded.outputs = [texts[i] for i in order[: plan.k]]
        return decoded

    async def _decode_query(self, job: Job) -> Decoded:
        """Query likelihood: the query's mean log-probability after each candidate's prompt."""
        decoded = Decoded(outputs=[], score_is_log=True)
        if not job.candidates:
            return decoded
        prompts, text = self._query_prompts(job)
        results = await score_pairs(job.engine, [(p, text) for p in prompts])
        for result in results:
            add_usage(decoded, result)
        scores = [mean_logprob(r) for r in results]
        order = sorted(range(len(prompts)), key=lambda i: -scores[i])  # stable: retriever ties
        decoded.ranked = [(i, scores[i]) for i in order]
        decoded.outputs = [job.rendered.items[i] for i in order[: job.plan.k]]
        return decoded

    def _query_prompts(self, job: Job) -> tuple[list[str], str]:
        """:func:`query_prompts`, each checked to be non-empty and to fit the context."""
        for item, turn in zip(job.candidates, job.rendered.items, strict=True):
            if not turn.strip():
                raise InvalidRequest(
                    f"candidate {item.id!r} renders an empty prompt under template "
                    f"{job.plan.template.name!r}, so query likelihood has nothing to condition on",
                    param="candidates",
                )
        prompts, text = query_prompts(
            job.rendered, job.plan.template, job.tokenizer, job.plan.request.query or ""
        )
        need = max(job.tokenizer.count(p) for p in prompts) + job.tokenizer.count(text) + 1
        if need > job.engine.max_model_len:
            raise PromptTooLong(
                f"a candidate's prompt with the query appended has {need} tokens, more than "
                f"the model's context of {job.engine.max_model_len}; send a shorter query",
                param="query",
            )
        return prompts, text

    def _texts(self, job: Job, pad: int) -> list[str]:
        """Each candidate's scored text, checked to be non-empty and to fit the context after
        the prompt and its ``pad`` tokens of alignment."""
        rendered = job.rendered
        texts = scored_texts(rendered)
        limit = job.engine.max_model_len
        for item, text in zip(job.candidates, texts, strict=True):
            if not text.strip():
                raise InvalidRequest(
                    f"candidate {item.id!r} has an empty description under template "
                    f"{rendered.template!r}, so likelihood mode has nothing to score",
                    param="candidates",
                )
            need = rendered.prompt_tokens + pad + job.tokenizer.count(text) + 1
            if need > limit:
                raise PromptTooLong(
                    f"the prompt with candidate {item.id!r}'s text appended has {need} tokens, "
                    f"more than the model's context of {limit}; send a shorter history or query",
                    param="candidates",
                )
        return texts

    async def _priors(self, job: Job, texts: list[str], decoded: Decoded) -> list[float]:
        """Mean log p(text | no need stated) per text (zeros unless the score is PMI)."""
        if (job.plan.settings.likelihood_score or "pmi") != "pmi":
            return [0.0] * len(texts)
        null = job.rerender(job.candidates, history=False, query=False)  # X0
        align = job.plan.settings.likelihood_align
        null_prompt, _ = aligned_prompt(null.prompt, null.prompt_tokens, job.tokenizer, align)
        keys = [(job.engine.model_name, null_prompt, t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._prior))
        results = await score_texts(job.engine, null_prompt, [k[2] for k in missing])
        for key, result in zip(missing, results, strict=True):
            add_usage(decoded, result)
            self._prior[key] = mean_logprob(result)
        out = []
        for key in keys:
            self._prior.move_to_end(key)
            out.append(self._prior[key])
        while len(self._prior) > _PRIOR_CACHE_SIZE:
            self._prior.popitem(last=False)
        return out

    async def ground(self, job: Job, decoded: Decoded) -> Picks:
        # Each score belongs to one candidate: nothing to match, nothing outside the candidates.
        top = decoded.ranked[: job.plan.k]
        matches = [Match(job.candidates[i], "score", 1.0) for i, _ in top]
        return Picks(Grounded(matches=matches), [s for _, s in top])
