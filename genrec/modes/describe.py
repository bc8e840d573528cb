"""describe: the LM writes a free description of the ideal item; grounding searches the whole
catalog by embedding similarity (BIGRec-style), so it can reach beyond the candidates."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from genrec.data.item import Item
from genrec.engines.base import Engine, EngineRequest
from genrec.grounding import Grounded, ground_description
from genrec.modes.base import Decoded, Job, Picks, Plan, add_usage
from genrec.schema import Usage

if TYPE_CHECKING:
    pass


async def describe_item(
    engine: Engine,
    prompt: str,
    *,
    max_tokens: int,
    temperature: float = 0.0,
    seed: int | None = None,
) -> Decoded:
    """A free description of the ideal item (one paragraph)."""
    done = await engine.complete(
        EngineRequest(
            prompt, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=("\n\n",)
        )
    )
    text = " ".join(done.text.split())
    decoded = Decoded(outputs=[text] if text else [], usage=Usage())
    add_usage(decoded, done)
    return decoded


class DescribeMode:
    name = "describe"

    def check(self, plan: Plan) -> None:
        return None

    def answer_room(self, plan: Plan, candidates: list[Item]) -> int:
        return plan.max_new_tokens

    async def decode(self, job: Job) -> Decoded:
        plan, rendered = job.plan, job.rendered
        return await describe_item(
            job.engine,
            rendered.prompt,
            max_tokens=plan.max_new_tokens,
            temperature=plan.request.temperature,
            seed=plan.request.seed,
        )

    async def ground(self, job: Job, decoded: Decoded) -> Picks:
        if not decoded.outputs:
            return Picks(Grounded(), [])
        matches = await asyncio.to_thread(
            ground_description,
            job.catalog,
            decoded.outputs[0],
            job.plan.k,
            banned=job.banned,
            where=job.plan.request.filters,
            candidates=job.candidates,
        )
        return Picks(Grounded(matches=matches), [m.confidence for m in matches])
