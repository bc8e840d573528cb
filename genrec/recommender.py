"""The async Recommender: request -> retrieve -> render -> decode -> ground -> Recommendation.

::

    async with Recommender(settings) as rec:
        result = await rec.recommend(RecommendRequest(history=["50", "172"], k=5))

One Recommender holds one engine, one catalog index and its retriever; share it between
concurrent requests (the engine batches them). The flow is one straight line (``recommend``):
``plan`` checks everything that can fail on bad input before any engine work (mode, template, k,
candidates, filters; the mode's own checks), ``personalise`` reads the user's state from the event
store (a request with ``user_id``: the stored history joins the request's, what the user bought or
rated is excluded), ``retrieve`` resolves the history once and asks the retriever for candidates
(popularity when there is nothing to go on: an unknown user without a query), ``render`` builds
the exact prompt (PromptTooLong when it cannot fit), and the mode object (:mod:`genrec.modes`)
decodes and grounds. Errors come from :mod:`genrec.errors` and name the field. Chroma, embedding
and event-store calls are synchronous and run in worker threads.

The retrievers it loads itself are hot-reloaded (genrec.retrieval.reload): a started Recommender
checks its collection's ``CURRENT`` every ``settings.reload_interval_s`` and swaps in a new bundle
whole; a request reads the serving retrievers once, at its start. The fine-tuned model's card
(fusion weight, likelihood score) is read once, at construction: it belongs to the weights the
engine serves, which a running Recommender cannot change (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AsyncExitStack, contextmanager

from genrec import explain
from genrec.catalog import Item
from genrec.engines import make_engine
from genrec.engines.base import Engine
from genrec.errors import CatalogError, EngineError, GenrecError, InvalidRequest
from genrec.events import EventStore, RecordResult, open_event_store, record_events
from genrec.explain.sentence import sentences
from genrec.filters import validate_where
from genrec.index import CatalogIndex
from genrec.model_files import model_path
from genrec.modes import MODES, Job, Picks, Plan
from genrec.modes.fusion import ScoreParts, fuse
from genrec.prompts import (
    ChatTokenizer,
    PromptRegistry,
    RenderedPrompt,
    infer_item_kind,
    render,
)
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.base import Candidate, Retriever
from genrec.retrieval.popular import PopularRetriever
from genrec.retrieval.registry import Retrievers
from genrec.retrieval.reload import Reloader
from genrec.schema import (
    MAX_EXCLUDE,
    Evidence,
    Recommendation,
    RecommendedItem,
    RecommendRequest,
    Timings,
    Usage,
    UserSummary,
)
from genrec.settings import Mode, Settings

log = logging.getLogger("genrec.recommender")

__all__ = ["Plan", "Recommender"]


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
        self._model_manifest = _manifest(settings)
        if settings.likelihood_score is None:  # the serving model's own choice, else PMI
            score = (self._model_manifest or {}).get("likelihood_score") or "pmi"
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
        self._fusion_weights: dict[str, float] = {}  # by mode
        self._started = False
        self._stack: AsyncExitStack | None = None

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
        from genrec.model_files import model_display_name

        return model_display_name(self.settings)

    # ------------------------------------------------------------------ the flow

    async def recommend(self, request: RecommendRequest) -> Recommendation:
        clock = _Clock()
        retrievers = self.retrievers  # once: a bundle swap mid-request cannot mix two
        plan = self.plan(request, retrievers)
        with clock("retrieve"):  # the user's state is part of finding the candidates
            user: UserSummary | None = None
            if request.user_id is not None:
                plan, user = await asyncio.to_thread(self.personalise, plan)
            history, retriever, scored = await asyncio.to_thread(self._retrieve, plan, retrievers)
            evidence = await asyncio.to_thread(self.evidence, plan, history, scored, retriever)
        request = plan.request
        candidates = [c.item for c in scored]
        with clock("render"):
            rendered = self.render(plan, history, candidates)
        # Only a valid request that fits the model reaches the engine.
        if not self.ready:
            raise EngineError("the recommender is not ready (engine starting, stopped or dead)")
        job = Job(
            engine=self.engine,
            tokenizer=self.tokenizer,  # type: ignore[arg-type]
            index=self.index,
            plan=plan,
            rendered=rendered,
            candidates=candidates,
            banned={h.id for h in history} | set(request.exclude),
            retrieval_scores=tuple(c.score for c in scored),
            shown_history=tuple(history[-self.settings.prompt_history :]),
        )
        with clock("llm"):
            decoded = await plan.mode.decode(job)
        # The one fusion call site: any mode that scored every candidate is grounded in the
        # fused order.
        fused = fuse(
            decoded.ranked,
            job.retrieval_scores,
            len(candidates),
            self.fusion_weight_for(plan.mode.name),
            is_log=decoded.score_is_log,
        )
        if fused is not None:
            decoded = dataclasses.replace(decoded, ranked=fused.ranked)
        with clock("ground"):
            picks = await plan.mode.ground(job, decoded)
        parts = {candidates[i].id: p for i, p in fused.parts.items()} if fused else {}
        weight = fused.weight if fused else None
        items = explain.attach(
            _items(picks, parts),
            evidence,
            [c.id for c in candidates],
            fusion_weight=weight,
            stored=user.history if user else (),
            lang=explain.language([request.query or "", *(c.title for c in candidates)]),
        )
        if request.explain:
            with clock("llm"):
                items = await sentences(job, items, decoded.usage)
        return Recommendation(
            items=items,
            mode=plan.mode.name,  # type: ignore[arg-type]
            retriever=retriever.name,
            bundle=retrievers.version,
            template=rendered.template,
            model=self.model_name,
            candidates=[c.id for c in candidates],
            outputs=decoded.outputs,
            unmatched=picks.grounded.unmatched,
            duplicates=picks.grounded.duplicates,
            usage=Usage.model_validate(decoded.usage.model_dump()),
            timings=clock.timings(),
            user=user,
            fusion_weight=weight,
        )

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

    # ------------------------------------------------------------------ stages

    def plan(self, request: RecommendRequest, retrievers: Retrievers | None = None) -> Plan:
        """Validate a request against settings and templates (and ``retrievers``, else those
        serving once loaded); no I/O."""
        name: Mode = request.mode or self.settings.mode
        template = self.prompts.for_request(request.template or self._default_template(name), name)
        n = request.candidates or self.settings.candidates
        k = request.k or self.settings.k
        if k < 1:
            raise InvalidRequest("k must be at least 1", param="k")
        if k > n:
            raise InvalidRequest(
                f"k={k} is more than the {n} candidates retrieved; lower k or raise candidates",
                param="k",
            )
        validate_where(request.filters, param="filters")
        retrievers = retrievers or self._loaded_retrievers()
        if retrievers is not None:
            retrievers.get(request.retriever)  # a 400 on `retriever` before any work
        plan = Plan(
            request=request,
            mode=MODES[name],
            template=template,
            k=k,
            n=n,
            max_new_tokens=request.max_tokens or self.settings.max_new_tokens,
            settings=self.settings,
        )
        plan.mode.check(plan)
        return plan

    def _default_template(self, mode: Mode) -> str | None:
        # settings.template is a default only where it serves the mode.
        name = self.settings.template
        if name and name in self.prompts.templates and self.prompts.get(name).serves(mode):
            return name
        return None

    def resolve_history(self, refs: Sequence[str]) -> list[Item]:
        """History entries (IDs or titles) -> items; any unknown entry is a 400 on ``history``."""
        return self.index.resolve_history(refs)

    def personalise(self, plan: Plan) -> tuple[Plan, UserSummary]:
        """The one place user state joins a request (``user_id``): the user's stored history (the
        latest ``settings.user_history`` distinct items, oldest first; genrec.events.store) comes
        first, the request's own history after it (the more recent; an item in both keeps its
        later place); items the user bought or rated are added to ``exclude`` unless the request
        sets ``include_consumed``. A user the store does not know adds nothing: cold start."""
        request = plan.request
        assert request.user_id is not None
        state = self.events.user_state(self.index.name, request.user_id, self.settings.user_history)
        # items removed from the catalog since they were recorded are left out
        stored = [item.id for item in self.index.get(list(state.history))]
        explicit = [item.id for item in self.index.resolve_history(request.history)]
        given = set(explicit)
        history = [i for i in stored if i not in given] + explicit
        exclude = list(request.exclude)
        added: list[str] = []
        if not request.include_consumed and state.consumed:
            skip = set(history) | set(exclude)  # the history is never recommended anyway
            added = sorted(state.consumed - skip)[: max(0, MAX_EXCLUDE - len(exclude))]
            exclude += added
        text = (request.query or "").strip()
        summary = UserSummary(
            id=request.user_id,
            history=stored,
            excluded=len(added),
            cold_start=not history and not text,
        )
        personal = request.model_copy(update={"history": history, "exclude": exclude})
        return dataclasses.replace(plan, request=personal), summary

    def _loaded_retrievers(self) -> Retrievers | None:
        if self._retrievers is not None:
            return self._retrievers
        return self._reloader.retrievers if self._reloader is not None else None

    def _retriever(
        self,
        request: RecommendRequest,
        history: Sequence[Item],
        retrievers: Retrievers | None = None,
    ) -> Retriever:
        """The request's retriever (from ``retrievers``, the request's snapshot; else those
        serving now), or popularity when there is nothing to go on."""
        if not (request.query or "").strip() and not history:
            return PopularRetriever(self.index)
        return (retrievers or self.retrievers).get(request.retriever)

    @property
    def fusion_weight(self) -> float:
        """The retriever's weight in fused scores for the default mode (see fusion_weight_for)."""
        return self.fusion_weight_for(self.settings.mode)

    def fusion_weight_for(self, mode: str) -> float:
        """The retriever's weight in ``mode``'s fused scores: the setting, else what the serving
        model's fine-tuning manifest chose on validation for that mode, else 0 (the LM's order)."""
        if mode not in self._fusion_weights:
            self._fusion_weights[mode] = resolve_fusion_weight(
                self.settings, mode, self._model_manifest
            )
        return self._fusion_weights[mode]

    def ranker(self) -> dict:
        """What ranks, for /v1/models: the model, whether it was fine-tuned (from its manifest:
        base model, template, validation NDCG@10) and the fusion weight in use."""
        doc: dict = {"model": self.model_name, "fine_tuned": False}
        manifest = self._model_manifest
        if manifest is not None:
            doc.update(
                fine_tuned=True,
                base_model=manifest.get("base_model"),
                objective=manifest.get("objective", "rank"),
                template=manifest.get("template"),
                retriever=manifest.get("retriever"),
                created=manifest.get("created"),
                validation_ndcg10=manifest.get("validation", {}).get("best", {}).get("ndcg@10"),
            )
        doc["fusion_weight"] = self.fusion_weight
        return doc

    def retrieve(self, plan: Plan) -> tuple[list[Item], list[Item]]:
        """(the resolved history, the candidates): the history is resolved here, once."""
        history, scored = self.retrieve_scored(plan)
        return history, [c.item for c in scored]

    def evidence(
        self,
        plan: Plan,
        history: list[Item],
        scored: list[Candidate],
        retriever: Retriever | None = None,
    ) -> dict[str, list[Evidence]] | None:
        """Each candidate's evidence (genrec.explain), from the scores ``retriever`` (the one
        that found them; default: the request's retriever now) made; None when turned off."""
        if not self.settings.explain_evidence:
            return None
        retriever = retriever or self._retriever(plan.request, history)
        return explain.explain_candidates(retriever, self.index, self._query(plan, history), scored)

    def _query(self, plan: Plan, history: Sequence[Item]) -> RetrievalQuery:
        request = plan.request
        return RetrievalQuery(
            text=(request.query or "").strip(),
            history=tuple(history),
            k=plan.n,
            where=request.filters,
            exclude=frozenset(request.exclude),
        )

    def retrieve_scored(self, plan: Plan) -> tuple[list[Item], list[Candidate]]:
        """(the resolved history, the candidates with the retriever's scores)."""
        history, _, candidates = self._retrieve(plan, self.retrievers)
        return history, candidates

    def _retrieve(
        self, plan: Plan, retrievers: Retrievers
    ) -> tuple[list[Item], Retriever, list[Candidate]]:
        request, index = plan.request, self.index
        if index.count() == 0:
            raise CatalogError(
                f"the catalog {index.name!r} is empty; ingest items first "
                f"(`genrec ingest --dataset ml-100k` or `genrec ingest FILE`)",
                param="collection",
            )
        history = index.resolve_history(request.history)
        retriever = self._retriever(request, history, retrievers)
        candidates = retriever.retrieve(self._query(plan, history))
        if len(candidates) < plan.k:
            raise InvalidRequest(
                f"only {len(candidates)} catalog items match this request (after filters, "
                f"history and exclusions), fewer than k={plan.k}; lower k or relax filters",
                param="k",
            )
        return history, retriever, candidates

    def render(self, plan: Plan, history: list[Item], candidates: list[Item]) -> RenderedPrompt:
        """The exact prompt for a validated request; PromptTooLong when it cannot fit."""
        if self.tokenizer is None:
            raise EngineError("the Recommender is not started (no tokenizer loaded)")
        max_len = self._engine.max_model_len if self._engine else self.settings.max_model_len
        return render(
            plan.template,
            self.tokenizer,
            mode=plan.mode.name,  # type: ignore[arg-type]
            candidates=candidates,
            history=history[-self.settings.prompt_history :],
            query=plan.request.query,
            k=plan.k,
            system=plan.request.system,
            item_kind=infer_item_kind(candidates, collection=self.index.name),
            max_prompt_tokens=max_len - plan.mode.answer_room(plan, candidates),
        )


def resolve_fusion_weight(
    settings: Settings, mode: str = "rank", manifest: dict | None = None
) -> float:
    """The setting, else the manifest's weight (``manifest``, else the model folder's) when it
    was chosen for ``mode`` (a manifest without a mode is a rank fine-tune's), else 0."""
    if settings.fusion_weight is not None:
        return settings.fusion_weight
    fusion = (manifest if manifest is not None else _manifest(settings) or {}).get("fusion", {})
    if fusion.get("mode", "rank") != mode:
        return 0.0
    return float(fusion.get("weight", 0.0))


def _manifest(settings: Settings) -> dict | None:
    """The serving model's fine-tuning manifest (genrec finetune), None for any other model."""
    if not settings.model or not os.path.isdir(os.path.expanduser(settings.model)):
        return None  # the packaged model, or a model name: never fine-tuned here
    from genrec.training.finetune import read_manifest

    return read_manifest(os.path.expanduser(settings.model))


def _items(picks: Picks, parts: dict[str, ScoreParts] | None = None) -> list[RecommendedItem]:
    parts = parts or {}
    return [
        RecommendedItem(
            id=m.item.id,
            title=m.item.title,
            score=round(float(s), 6),
            rank=r + 1,
            grounded_by=m.grounded_by,
            confidence=m.confidence,
            from_candidates=m.from_candidates,
            lm_logprob=_rounded(parts[m.item.id].lm_logprob) if m.item.id in parts else None,
            retrieval_score=_rounded(parts[m.item.id].retrieval_score)
            if m.item.id in parts
            else None,
        )
        for r, (m, s) in enumerate(zip(picks.grounded.matches, picks.scores, strict=True))
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


class _Clock:
    """Per-stage wall time: ``with clock("llm"): ...``; total from construction."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._ms[stage] = _ms(time.perf_counter() - t0)

    def timings(self) -> Timings:
        stages = {f"{name}_ms": ms for name, ms in self._ms.items()}
        return Timings(**stages, total_ms=_ms(time.perf_counter() - self._t0))


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)
