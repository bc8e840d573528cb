"""The async Recommender: request -> retrieve -> render -> decode -> ground -> Recommendation.

::

    async with Recommender(settings) as rec:
        result = await rec.recommend(RecommendRequest(history=["50", "172"], k=5))

One Recommender holds one engine, one catalog index and its retrievers; share it between
concurrent requests (the engine batches them). The flow is one straight line (``recommend``)
going down, each stage in :mod:`genrec.flow` and handed what it needs: ``plan`` checks all
that can fail on bad input before any work; ``personalise`` joins the user's stored state and
``find`` resolves the history and chooses the retriever once; the prompt is rendered through
the request's one frame (PromptTooLong when it cannot fit); the mode (:mod:`genrec.modes`)
decodes and grounds; fusion weighs in the retriever's scores; the result carries its items'
catalog records, so nothing downstream (the chat answer's text) fetches them again. Errors
name the field (:mod:`genrec.errors`); Chroma, embedding and event-store calls run in threads.

The retrievers it loads itself are hot-reloaded (genrec.retrieval.reload): a started Recommender
checks its collection's ``CURRENT`` every ``settings.reload_interval_s`` and swaps in a new bundle
whole; a request reads the serving retrievers once, at its start. The serving model's card
(:mod:`genrec.model_card`: fusion weight per mode, likelihood score, objective) is read once, at
construction: it belongs to the weights the engine serves, which a running Recommender cannot
change (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import threading
from collections.abc import Sequence
from contextlib import AsyncExitStack

from genrec import explain
from genrec.data.item import Item
from genrec.engines import make_engine
from genrec.engines.base import Engine
from genrec.engines.hardware import allowed_cpus
from genrec.errors import EngineError, GenrecError, InvalidRequest
from genrec.events import EventStore, RecordResult, open_event_store, record_events
from genrec.explain.sentence import sentences
from genrec.flow import candidates as stages
from genrec.flow.gate import FairGate
from genrec.flow.plan import plan_request
from genrec.flow.prompt import PromptFrame
from genrec.flow.result import Clock, recommended_items
from genrec.index import CatalogIndex
from genrec.model_card import ModelCard, resolve_fusion_weight
from genrec.model_files import model_display_name, model_path
from genrec.modes import Job, Plan
from genrec.modes.fusion import fuse
from genrec.prompts import ChatTokenizer, PromptRegistry, RenderedPrompt
from genrec.retrieval.base import Candidate
from genrec.retrieval.registry import Retrievers
from genrec.retrieval.reload import Reloader
from genrec.schema import Recommendation, RecommendRequest, Usage, UserSummary
from genrec.settings import Settings

log = logging.getLogger("genrec.recommender")

__all__ = ["Plan", "Recommender", "resolve_fusion_weight"]


class Recommender:
    def __init__(
        self,
        settings: Settings,
        *,
        index: CatalogIndex | None = None,
        engine: Engine | None = None,
        prompts: PromptRegistry | None = None,
        tokenizer: ChatTokenizer | None = None,
        retrievers: Retrievers | None = None,
        events: EventStore | None = None,
    ) -> None:
        # Pinned: a fine-tune landing in the same folder later is not what the engine serves.
        self.card = ModelCard.read(settings)
        if settings.likelihood_score is None:  # the serving model's own choice, else PMI
            score = self.card.likelihood_score()
            settings = settings.model_copy(update={"likelihood_score": score})
        self.settings = settings
        self._events = events
        self._owns_events = events is None
        self._events_lock = threading.Lock()
        self._index = index
        self._engine = engine
        self._retrievers = retrievers  # given: served as they are, never reloaded
        self._reloader: Reloader | None = None  # loaded here: hot-reloaded
        self._watcher: asyncio.Task | None = None
        self.prompts = prompts or PromptRegistry(settings)
        self.tokenizer = tokenizer
        self._started = False
        self._stack: AsyncExitStack | None = None
        self._gate = FairGate(settings.retrieval_concurrency or len(allowed_cpus()) + 1)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Recommender:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the index, load the tokenizer, enter the engine (which starts it unless it is
        running: whoever starts an engine stops it, see genrec.engines.base) and warm the
        embedder, so the first request pays no set-up."""
        if self._started:
            return
        if self._index is None:
            self._index = await asyncio.to_thread(CatalogIndex, self.settings)
        if self._retrievers is None and self._reloader is None:
            self._reloader = await asyncio.to_thread(Reloader.load, self.settings, self._index)
        if self.tokenizer is None:
            model = await asyncio.to_thread(model_path, self.settings)
            self.tokenizer = await asyncio.to_thread(ChatTokenizer.load, model)
        if self._engine is None:
            self._engine = make_engine(self.settings)
        self._stack = AsyncExitStack()
        try:
            await self._stack.enter_async_context(self._engine)
            await asyncio.to_thread(self._index.warm)
            # What start-up loaded (catalog summary, retrievers, engine) leaves the cyclic
            # collector's reach: a full collection over it stalled requests ~200 ms at 300,000
            # items (docs/scale.md). Refcounting still frees what a reload drops.
            gc.freeze()
            if self._reloader is not None and self.settings.reload_interval_s > 0:
                self._watcher = asyncio.create_task(
                    self._reloader.watch(self.settings.reload_interval_s), name="genrec-reload"
                )
        except BaseException:
            # Anything failing after the engine started (e.g. the embedder warm-up) must not
            # leak a running vLLM engine: stop what was started here, then re-raise.
            await self.close()
            raise
        self._started = True

    async def close(self) -> None:
        self._started = False
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            try:
                await watcher
            except asyncio.CancelledError:
                pass
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()
        if self._owns_events and self._events is not None:
            events, self._events = self._events, None
            await asyncio.to_thread(events.close)

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
    def retrievers(self) -> Retrievers:
        """The serving retrievers; a request reads this once and keeps what it got."""
        if self._retrievers is not None:
            return self._retrievers
        if self._reloader is None:  # a Recommender given its index validates unstarted too
            self._reloader = Reloader.load(self.settings, self.index)
        return self._reloader.retrievers

    async def reload(self) -> bool:
        """Check the collection's ``CURRENT`` now (the watcher does every
        ``settings.reload_interval_s``); True when a new bundle now serves. Retrievers given
        to the constructor are never reloaded."""
        if self._retrievers is not None:
            return False
        self.retrievers  # noqa: B018 - loaded on first use
        assert self._reloader is not None
        return await asyncio.to_thread(self._reloader.check, force=True)

    def bundle_status(self) -> dict | None:
        """Which bundle serves and what the last reload check found (None: retrievers given)."""
        return self._reloader.describe() if self._reloader is not None else None

    @property
    def events(self) -> EventStore:
        """The event store (settings.events_url; SQLite under home by default), opened on first
        use."""
        with self._events_lock:  # concurrent first requests open one store, not two
            if self._events is None:
                self._events = open_event_store(self.settings)
            return self._events

    @property
    def model_name(self) -> str:
        if self._engine is not None and self._engine.model_name:
            return self._engine.model_name
        return model_display_name(self.settings)

    # ------------------------------------------------------------------ the flow

    async def recommend(self, request: RecommendRequest) -> Recommendation:
        clock = Clock()
        retrievers = self.retrievers  # once: a bundle swap mid-request cannot mix two
        plan = self.plan(request, retrievers)
        weight, bundle = self.fusion_weight_for(plan.mode.name), retrievers.version  # read up front
        with clock("retrieve"):  # the user's state is part of finding the candidates
            user: UserSummary | None = None
            if request.user_id is not None:
                plan, user = await asyncio.to_thread(self.personalise, plan)
            found = await asyncio.to_thread(self._find, retrievers, plan)
        request, history = plan.request, found.history
        candidates = [c.item for c in found.scored]
        with clock("render"):
            frame = self._frame(plan, history, candidates)
            rendered = frame.render(candidates, max_prompt_tokens=self._budget(plan, candidates))
        # Only a valid request that fits the model reaches the engine.
        if not self.ready:
            raise EngineError("the recommender is not ready (engine starting, stopped or dead)")
        job = Job(
            engine=self.engine,
            tokenizer=self.tokenizer,  # type: ignore[arg-type]
            catalog=self.index,
            plan=plan,
            frame=frame,
            rendered=rendered,
            candidates=candidates,
            banned={h.id for h in history} | set(request.exclude),
            retrieval_scores=tuple(c.score for c in found.scored),
        )
        with clock("llm"):
            decoded = await plan.mode.decode(job)
        # The one fusion call site: any mode that scored every candidate is grounded in the
        # fused order.
        n = len(candidates)
        fused = fuse(decoded.ranked, job.retrieval_scores, n, weight, is_log=decoded.score_is_log)
        if fused is not None:
            decoded = dataclasses.replace(decoded, ranked=fused.ranked)
        with clock("ground"):
            picks = await plan.mode.ground(job, decoded)
        parts = {candidates[i].id: p for i, p in fused.parts.items()} if fused else {}
        with clock("retrieve"):  # the evidence of the items served, from the retrieval's scores
            served = {m.item.id for m in picks.grounded.matches}
            evidence = await asyncio.to_thread(
                stages.evidence, self.settings, self.index, plan, found, served
            )
        items = explain.attach(
            recommended_items(picks, parts),
            evidence,
            [c.id for c in candidates],
            fusion_weight=fused.weight if fused else None,
            stored=user.history if user else (),
            lang=explain.language([request.query or "", *(c.title for c in candidates)]),
        )
        if request.explain:
            with clock("llm"):
                items = await sentences(job, items, decoded.usage)
        return Recommendation(
            items=items,
            mode=plan.mode.name,  # type: ignore[arg-type]
            retriever=found.retriever.name,
            bundle=bundle,
            template=rendered.template,
            model=self.model_name,
            candidates=[c.id for c in candidates],
            outputs=decoded.outputs,
            unmatched=picks.grounded.unmatched,
            duplicates=picks.grounded.duplicates,
            usage=Usage.model_validate(decoded.usage.model_dump()),
            timings=clock.timings(),
            user=user,
            fusion_weight=fused.weight if fused else None,
        ).with_catalog(m.item for m in picks.grounded.matches)

    async def record(self, events: Sequence[object]) -> RecordResult:
        """Store a batch of events (dicts or :class:`genrec.events.Event`): each is checked on its
        own (an unknown item, a bad type or timestamp is rejected with its index and reason), the
        others are committed before this returns, and the user's next request sees them."""
        return await asyncio.to_thread(record_events, self.events, self.index, list(events))

    async def forget_user(self, user_id: str) -> int:
        """Delete every stored event of a user (privacy); the number deleted."""
        return await asyncio.to_thread(self.events.forget, user_id)

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

    # ------------------------------------------------------------------ stages (genrec.flow)

    def plan(self, request: RecommendRequest, retrievers: Retrievers | None = None) -> Plan:
        """Validate a request against settings and templates (and ``retrievers``, else those
        serving once loaded); no I/O."""
        if retrievers is None:  # those serving, once loaded (a given index plans unstarted)
            retrievers = self._retrievers
            if retrievers is None and self._reloader is not None:
                retrievers = self._reloader.retrievers
        return plan_request(self.settings, self.prompts, request, retrievers)

    def resolve_history(self, refs: Sequence[str]) -> list[Item]:
        """History entries (IDs or titles) -> items; any unknown entry is a 400 on ``history``."""
        return self.index.resolve_history(refs)

    def personalise(self, plan: Plan) -> tuple[Plan, UserSummary]:
        """The user's stored state joins the request (genrec.flow.candidates.personalise)."""
        return stages.personalise(self.events, self.index, self.settings, plan)

    def retrieve(self, plan: Plan) -> tuple[list[Item], list[Item]]:
        """(the resolved history, the candidates): the history is resolved here, once."""
        history, scored = self.retrieve_scored(plan)
        return history, [c.item for c in scored]

    def retrieve_scored(self, plan: Plan) -> tuple[list[Item], list[Candidate]]:
        """(the resolved history, the candidates with the retriever's scores)."""
        found = self._find(self.retrievers, plan)
        return found.history, found.scored

    def _find(self, retrievers: Retrievers, plan: Plan) -> stages.Found:
        with self._gate:  # a few at a time, in arrival order (genrec.flow.gate)
            return stages.find(self.index, retrievers, plan)

    def render(self, plan: Plan, history: list[Item], candidates: list[Item]) -> RenderedPrompt:
        """The exact prompt for a validated request; PromptTooLong when it cannot fit."""
        frame = self._frame(plan, history, candidates)
        return frame.render(candidates, max_prompt_tokens=self._budget(plan, candidates))

    def _frame(self, plan: Plan, history: list[Item], candidates: list[Item]) -> PromptFrame:
        if self.tokenizer is None:
            raise EngineError("the Recommender is not started (no tokenizer loaded)")
        return PromptFrame.of(
            plan.template,
            self.tokenizer,
            plan.mode.name,  # type: ignore[arg-type]
            history=history[-self.settings.prompt_history :],
            candidates=candidates,
            query=plan.request.query,
            k=plan.k,
            system=plan.request.system,
            collection=self.index.name,
        )

    def _budget(self, plan: Plan, candidates: list[Item]) -> int:
        """Prompt tokens the context leaves after the mode's answer."""
        max_len = self._engine.max_model_len if self._engine else self.settings.max_model_len
        return max_len - plan.mode.answer_room(plan, candidates)

    # ------------------------------------------------------------------ the model's card

    @property
    def fusion_weight(self) -> float:
        """The retriever's weight in fused scores for the default mode (see fusion_weight_for)."""
        return self.fusion_weight_for(self.settings.mode)

    def fusion_weight_for(self, mode: str) -> float:
        """The retriever's weight in ``mode``'s fused scores: the setting, else what the serving
        model's fine-tuning chose on validation for that mode, else 0 (the LM's order)."""
        return self.card.fusion_weight(self.settings, mode)

    def ranker(self) -> dict:
        """What ranks, for /v1/models: the model, whether it was fine-tuned (from its card: base
        model, template, validation NDCG@10) and the fusion weight in use."""
        return {
            "model": self.model_name,
            **self.card.describe(),
            "fusion_weight": self.fusion_weight,
        }
