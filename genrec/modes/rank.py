"""rank: one forward pass ranks all N candidates by their label's next-token probability.

The prompt ends where the model writes a candidate label; the engine returns the
log-probabilities of exactly the candidates' label tokens (a :class:`Labels` constraint: vLLM's
``allowed_token_ids`` masks everything else, and ``processed_logprobs`` reports the masked
distribution). An engine returns at most ``max_logprobs`` of them per call (vLLM's default is
20). For more candidates the labels are split into chunks that all contain the first label as an
anchor; the chunks run concurrently (the shared prompt is prefix-cached) and each chunk's
log-probabilities are shifted so the anchor agrees, which puts every label on one scale (within a
chunk, log p(x) - log p(anchor) is the logit difference, the same whatever else is allowed).
Then they are renormalised.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from genrec.data.item import Item
from genrec.engines.base import Engine, EngineRequest
from genrec.errors import InvalidRequest
from genrec.grounding import Grounded, Match
from genrec.modes.base import Decoded, Job, Picks, Plan
from genrec.modes.fusion import FLOOR_LOGPROB
from genrec.schema import Usage

if TYPE_CHECKING:
    pass


def label_chunks(n: int, cap: int) -> list[list[int]]:
    """Label positions per engine call: one call when n <= cap, else chunks that each include
    position 0 (the anchor) and at most cap - 1 others."""
    if cap < 1:
        raise ValueError("cap must be at least 1")
    if n <= cap:
        return [list(range(n))]
    if cap < 2:
        raise ValueError("ranking more labels than max_logprobs needs max_logprobs >= 2")
    rest = list(range(1, n))
    return [[0, *rest[i : i + cap - 1]] for i in range(0, len(rest), cap - 1)]


def merge_chunks(chunks: list[list[int]], results: list[dict[int, float]], n: int) -> list[float]:
    """One log-probability per position from chunked results (see the module docstring).
    A label a chunk did not return gets -inf."""
    merged = [-math.inf] * n
    anchor: float | None = None
    for positions, got in zip(chunks, results, strict=True):
        shift = 0.0
        if len(chunks) > 1:
            if 0 not in got or not math.isfinite(got[0]):
                continue  # no anchor, no common scale: these labels stay -inf
            if anchor is None:
                anchor = got[0]
            shift = anchor - got[0]
        for pos in positions:
            if pos in got:
                merged[pos] = got[pos] + shift
    finite = [v for v in merged if math.isfinite(v)]
    if not finite:
        return merged
    top = max(finite)
    log_z = top + math.log(sum(math.exp(v - top) for v in finite))
    return [v - log_z if math.isfinite(v) else v for v in merged]


async def rank_labels(
    engine: Engine, prompt: str, label_ids: list[int], *, cap: int | None = None
) -> Decoded:
    """All candidates ordered by their label's probability (``ranked``: best first, all N)."""
    n = len(label_ids)
    chunks = label_chunks(n, cap or engine.max_logprobs)
    answers = await asyncio.gather(
        *(engine.complete(EngineRequest.labels(prompt, [label_ids[p] for p in c])) for c in chunks)
    )
    by_pos = [
        {p: a.label_logprobs[label_ids[p]] for p in c if label_ids[p] in a.label_logprobs}
        for c, a in zip(chunks, answers, strict=True)
    ]
    logps = merge_chunks(chunks, by_pos, n)
    # Stable sort: ties (and labels the engine did not return) keep candidate order.
    order = sorted(range(n), key=lambda i: -logps[i] if math.isfinite(logps[i]) else math.inf)
    usage = Usage(
        prompt_tokens=sum(a.prompt_tokens for a in answers),
        completion_tokens=len(answers),
        cached_tokens=sum(a.cached_tokens for a in answers),
    )
    return Decoded(
        outputs=[],
        usage=usage,
        calls=len(answers),
        ranked=[(i, math.exp(logps[i]) if math.isfinite(logps[i]) else 0.0) for i in order],
    )


def _log(p: float) -> float:
    return math.log(p) if p > 0 else FLOOR_LOGPROB


class RankMode:
    name = "rank"

    def check(self, plan: Plan) -> None:
        from genrec.prompts import LETTERS

        labels = plan.template.meta.labels
        if labels == "letters" and plan.n > len(LETTERS):
            raise InvalidRequest(
                f"rank mode labels candidates with single-token letters, at most {len(LETTERS)}; "
                f"ask for at most {len(LETTERS)} candidates",
                param="candidates",
            )
        if labels == "numbers" and plan.n > 9:
            raise InvalidRequest(
                f"template {plan.template.name!r} numbers its candidates, and only 1-9 are single "
                "tokens: ask for at most 9 candidates or use a letters template",
                param="candidates",
            )

    def answer_room(self, plan: Plan, candidates: list[Item]) -> int:
        return 1  # one label token

    async def decode(self, job: Job) -> Decoded:
        plan, rendered = job.plan, job.rendered
        label_ids = job.tokenizer.label_token_ids(rendered.labels, rendered.prompt)
        if plan.settings.rank_permutations == 2:
            decoded = await self._both_orders(job, label_ids)
        else:
            decoded = await rank_labels(job.engine, rendered.prompt, label_ids)
        decoded.outputs = [rendered.labels[i] for i, _ in decoded.ranked[: plan.k]]
        return decoded

    async def _both_orders(self, job: Job, label_ids: list[int]) -> Decoded:
        """The permutation pass: the candidates also in reversed order (the first becomes the
        last label), both prompts at once (they share the cached system text and history), and
        each candidate's log-probability averaged over the two orders, then renormalised. A
        label's position bias moves it the other way in the second pass, so it cancels to first
        order."""
        n = len(job.candidates)
        flipped = job.rerender(job.candidates[::-1])
        flipped_ids = job.tokenizer.label_token_ids(flipped.labels, flipped.prompt)
        first, second = await asyncio.gather(
            rank_labels(job.engine, job.rendered.prompt, label_ids),
            rank_labels(job.engine, flipped.prompt, flipped_ids),
        )
        p1, p2 = dict(first.ranked), dict(second.ranked)  # candidate position -> probability
        logp = [
            (_log(p1[i]) + _log(p2[n - 1 - i])) / 2 for i in range(n)
        ]  # in the flipped list, candidate i sits at n-1-i
        top = max(logp)
        log_z = top + math.log(sum(math.exp(v - top) for v in logp))
        order = sorted(range(n), key=lambda i: -logp[i])
        usage = Usage(
            prompt_tokens=first.usage.prompt_tokens + second.usage.prompt_tokens,
            completion_tokens=first.usage.completion_tokens + second.usage.completion_tokens,
            cached_tokens=first.usage.cached_tokens + second.usage.cached_tokens,
        )
        return Decoded(
            outputs=[],
            usage=usage,
            calls=first.calls + second.calls,
            ranked=[(i, math.exp(logp[i] - log_z)) for i in order],
        )

    async def ground(self, job: Job, decoded: Decoded) -> Picks:
        # A label is its candidate: nothing to match, nothing can fall outside the candidates.
        top = decoded.ranked[: job.plan.k]
        matches = [Match(job.candidates[i], "label", 1.0) for i, _ in top]
        return Picks(Grounded(matches=matches), [p for _, p in top])
