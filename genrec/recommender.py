"""The async Recommender: request -> retrieve -> render -> decode -> ground -> Recommendation.

::

    async with Recommender(settings) as rec:
        result = await rec.recommend(RecommendRequest(history=["50", "172"], k=5))

One Recommender holds one engine and one catalog index; share it between concurrent requests
(the engine batches them). Every check that can fail on bad input runs before any engine work:
mode, template, k, candidates, filters, an empty catalog, unknown history items, a prompt that
does not fit the model's context; each raises an error from :mod:`genrec.errors` naming the field.
Chroma and embedding calls are synchronous and run in worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from genrec import decoding
from genrec.catalog import Item
from genrec.engines import make_engine
from genrec.engines.base import Engine
from genrec.errors import CatalogError, EngineError, GenrecError, InvalidRequest
from genrec.grounding import Grounded, Grounder, Match, ground_description
from genrec.index import CatalogIndex, validate_where
from genrec.model_files import model_path
from genrec.prompts import (
    LETTERS,
    ChatTokenizer,
    PromptRegistry,
    PromptTemplate,
    RenderedPrompt,
    infer_item_kind,
    render,
)
from genrec.schema import Recommendation, RecommendedItem, RecommendRequest, Timings, Usage
from genrec.settings import Mode, Settings

log = logging.getLogger("genrec.recommender")


@dataclass
class Plan:
    """A validated request: everything decided before any I/O."""

    request: RecommendRequest
    mode: Mode
    template: PromptTemplate
    k: int
    n: int
    max_new_tokens: int


class Recommender:
    def __init__(
        self,
        settings: Settings,
        *,
        index: CatalogIndex | None = None,
        engine: Engine | None = None,
        prompts: PromptRegistry | None = None,
        tokenizer: ChatTokenizer | None = None,
    ) -> None:
        self.settings = settings
        self._index = index
        self._engine = engine
        self._owns_engine = engine is None
        self.prompts = prompts or PromptRegistry(settings)
        self.tokenizer = tokenizer
        self._started = False
        self._started_engine = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Recommender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the index, load the tokenizer, start the engine (unless the caller's is healthy),
        and warm the embedder, so the first request pays no set-up."""
        if self._started:
            return
        if self._index is None:
            self._index = await asyncio.to_thread(CatalogIndex, self.settings)
        if self.tokenizer is None:
            model = await asyncio.to_thread(model_path, self.settings)
            self.tokenizer = await asyncio.to_thread(ChatTokenizer.load, model)
        if self._engine is None:
            self._engine = make_engine(self.settings)
        try:
            if self._owns_engine or not self._engine.healthy:
                self._started_engine = True  # set first: a failed start may leave work to undo
                await self._engine.start()
            await asyncio.to_thread(self._index.warm)
        except BaseException:
            # Anything failing after the engine started (e.g. the embedder warm-up) must not
            # leak a running vLLM engine: shut down what was started here, then re-raise.
            await self.close()
            raise
        self._started = True

    async def close(self) -> None:
        self._started = False
        if self._engine is not None and self._owns_engine and self._started_engine:
            self._started_engine = False
            await self._engine.shutdown()

    @property
    def ready(self) -> bool:
        """Able to serve: an index, a tokenizer and a healthy engine (started here or given)."""
        return (
            self._index is not None
            and self.tokenizer is not None
            and self._engine is not None
            and self._engine.healthy
        )

    @property
    def index(self) -> CatalogIndex:
        if self._index is None:
            raise EngineError("the Recommender is not started (use `async with Recommender(...)`)")
        return self._index

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise EngineError("the Recommender is not started (use `async with Recommender(...)`)")
        return self._engine

    @property
    def model_name(self) -> str:
        if self._engine is not None and self._engine.model_name:
            return self._engine.model_name
        from genrec.model_files import model_display_name

        return model_display_name(self.settings)

    # ------------------------------------------------------------------ validation

    def plan(self, request: RecommendRequest) -> Plan:
        """Validate a request against settings and templates; no I/O."""
        mode: Mode = request.mode or self.settings.mode
        template = self.prompts.for_request(request.template or self._default_template(mode), mode)
        n = request.candidates or self.settings.candidates
        k = request.k or self.settings.k
        if k < 1:
            raise InvalidRequest("k must be at least 1", param="k")
        if k > n:
            raise InvalidRequest(
                f"k={k} is more than the {n} candidates retrieved; lower k or raise candidates",
                param="k",
            )
        if mode == "rank" and template.meta.labels == "letters" and n > len(LETTERS):
            raise InvalidRequest(
                f"rank mode labels candidates with single-token letters, at most {len(LETTERS)}; "
                f"ask for at most {len(LETTERS)} candidates",
                param="candidates",
            )
        if mode == "rank" and template.meta.labels == "numbers" and n > 9:
            raise InvalidRequest(
                f"template {template.name!r} numbers its candidates, and only 1-9 are single "
                "tokens: ask for at most 9 candidates or use a letters template",
                param="candidates",
            )
        validate_where(request.filters, param="filters")
        max_new = request.max_tokens or self.settings.max_new_tokens
        return Plan(request=request, mode=mode, template=template, k=k, n=n, max_new_tokens=max_new)

    def _default_template(self, mode: Mode) -> str | None:
        # settings.template is a default only where it serves the mode.
        name = self.settings.template
        if name and name in self.prompts.templates and self.prompts.get(name).serves(mode):
            return name
        return None

    # ------------------------------------------------------------------ the flow

    async def recommend(self, request: RecommendRequest) -> Recommendation:
        t_start = time.perf_counter()
        plan = self.plan(request)

        t0 = time.perf_counter()
        history, candidates = await asyncio.to_thread(self._retrieve, plan)
        t_retrieve = time.perf_counter() - t0

        t0 = time.perf_counter()
        rendered = self.render(plan, history, candidates)
        label_ids: list[int] = []
        if plan.mode == "rank":
            label_ids = self.tokenizer.label_token_ids(rendered.labels, rendered.prompt)
        t_render = time.perf_counter() - t0

        # Only a valid request that fits the model reaches the engine.
        if not self.ready:
            raise EngineError("the recommender is not ready (engine starting, stopped or dead)")
        engine = self.engine
        t0 = time.perf_counter()
        banned = {h.id for h in history} | set(request.exclude)
        items: list[RecommendedItem]
        outputs: list[str]
        grounded: Grounded
        if plan.mode == "rank":
            ranked = await decoding.rank(engine, rendered.prompt, label_ids)
            t_llm = time.perf_counter() - t0
            t0 = time.perf_counter()
            usage = ranked.usage
            top = ranked.order[: plan.k]
            outputs = [rendered.labels[i] for i, _ in top]
            grounded = Grounded(
                matches=[Match(candidates[i], "label", 1.0) for i, _ in top],
            )
            scores = [p for _, p in top]
        elif plan.mode == "generate":
            gen = await decoding.generate(
                engine,
                rendered.prompt,
                rendered.titles,
                plan.k,
                tokenize=self.tokenizer.encode,
                temperature=request.temperature,
                seed=request.seed,
            )
            t_llm = time.perf_counter() - t0
            t0 = time.perf_counter()
            usage, outputs = gen.usage, gen.outputs
            grounder = Grounder(
                candidates,
                rendered.titles,
                index=self.index,
                banned=banned,
                embedding_scope="candidates",
            )
            # Grounding touches Chroma/embeddings only when exact/fuzzy matching fails.
            grounded = await asyncio.to_thread(grounder.ground_all, outputs, plan.k)
            scores = [round(1.0 - r / plan.k, 4) for r in range(len(grounded.matches))]
        else:
            desc = await decoding.describe(
                engine,
                rendered.prompt,
                max_tokens=plan.max_new_tokens,
                temperature=request.temperature,
                seed=request.seed,
            )
            t_llm = time.perf_counter() - t0
            t0 = time.perf_counter()
            usage, outputs = desc.usage, desc.outputs
            grounded = Grounded()
            if outputs:
                matches = await asyncio.to_thread(
                    ground_description,
                    self.index,
                    outputs[0],
                    plan.k,
                    banned=banned,
                    where=request.filters,
                    candidates=candidates,
                )
                grounded = Grounded(matches=matches)
            scores = [m.confidence for m in grounded.matches]
        items = [
            RecommendedItem(
                id=m.item.id,
                title=m.item.title,
                score=round(float(s), 6),
                rank=r + 1,
                grounded_by=m.grounded_by,
                confidence=m.confidence,
                from_candidates=m.from_candidates,
            )
            for r, (m, s) in enumerate(zip(grounded.matches, scores, strict=True))
        ]
        t_ground = time.perf_counter() - t0
        return Recommendation(
            items=items,
            mode=plan.mode,
            template=rendered.template,
            model=self.model_name,
            candidates=[c.id for c in candidates],
            outputs=outputs,
            unmatched=grounded.unmatched,
            duplicates=grounded.duplicates,
            usage=Usage(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
            ),
            timings=Timings(
                retrieve_ms=_ms(t_retrieve),
                render_ms=_ms(t_render),
                llm_ms=_ms(t_llm),
                ground_ms=_ms(t_ground),
                total_ms=_ms(time.perf_counter() - t_start),
            ),
        )

    async def recommend_many(
        self, requests: Sequence[RecommendRequest], *, concurrency: int = 8
    ) -> list[Recommendation | GenrecError]:
        """All requests, at most ``concurrency`` at a time; results in request order. A request
        that fails gives its error in its place instead of failing the batch."""
        if concurrency < 1:
            raise InvalidRequest("concurrency must be at least 1", param="concurrency")
        gate = asyncio.Semaphore(concurrency)

        async def one(req: RecommendRequest) -> Recommendation | GenrecError:
            async with gate:
                try:
                    return await self.recommend(req)
                except GenrecError as exc:
                    return exc

        return list(await asyncio.gather(*(one(r) for r in requests)))

    # ------------------------------------------------------------------ stages

    def resolve_history(self, refs: Sequence[str]) -> list[Item]:
        """History entries (IDs or titles) -> items; any unknown entry is a 400 on ``history``."""
        index = self.index
        found = {item.id: item for item in index.get(list(refs))}
        out: list[Item] = []
        missing: list[str] = []
        for ref in refs:
            item = found.get(str(ref)) or index.resolve(ref)
            if item is None:
                missing.append(ref)
            else:
                out.append(item)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise InvalidRequest(
                f"history has {len(missing)} item(s) not in the catalog: {shown}; "
                f"use item IDs or exact titles from collection {index.name!r}",
                param="history",
            )
        return out

    def _retrieve(self, plan: Plan) -> tuple[list[Item], list[Item]]:
        request, index = plan.request, self.index
        if index.count() == 0:
            raise CatalogError(
                f"the catalog {index.name!r} is empty; ingest items first "
                f"(`genrec ingest --dataset ml-100k` or `genrec ingest FILE`)",
                param="collection",
            )
        history = self.resolve_history(request.history)
        hits = index.search(
            request.query,
            history=[h.id for h in history],
            k=plan.n,
            where=request.filters,
            exclude=request.exclude,
        )
        candidates = [h.item for h in hits]
        if len(candidates) < plan.k:
            raise InvalidRequest(
                f"only {len(candidates)} catalog items match this request (after filters, "
                f"history and exclusions), fewer than k={plan.k}; lower k or relax filters",
                param="k",
            )
        return history, candidates

    def render(self, plan: Plan, history: list[Item], candidates: list[Item]) -> RenderedPrompt:
        """The exact prompt for a validated request; PromptTooLong when it cannot fit."""
        if self.tokenizer is None:
            raise EngineError("the Recommender is not started (no tokenizer loaded)")
        max_len = self._engine.max_model_len if self._engine else self.settings.max_model_len
        answer_room = self._answer_room(plan, candidates)
        return render(
            plan.template,
            self.tokenizer,
            mode=plan.mode,
            candidates=candidates,
            history=history,
            query=plan.request.query,
            k=plan.k,
            system=plan.request.system,
            item_kind=infer_item_kind(candidates, collection=self.index.name),
            max_prompt_tokens=max_len - answer_room,
        )

    def _answer_room(self, plan: Plan, candidates: list[Item]) -> int:
        if plan.mode == "rank":
            return 1
        if plan.mode == "describe":
            return plan.max_new_tokens
        # generate: the k longest titles plus separators, estimated from characters (a token is
        # rarely shorter than 2 characters). An estimate only: nothing recomputes it exactly, but
        # the engine checks every call's prompt + max_tokens against the context and raises
        # PromptTooLong (in process) or gets the server's context-length 400 (remote).
        longest = sorted((len(c.title) for c in candidates), reverse=True)[: plan.k]
        return sum(n // 2 + 2 for n in longest) + 2


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)
