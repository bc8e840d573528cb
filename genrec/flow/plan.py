"""A request validated against settings, templates and the serving retrievers, before any I/O:
every check that can fail on bad input (mode, template, k, candidates, filters, the retriever's
name, the mode's own checks) fails here, as a 400 naming the field."""

from __future__ import annotations

from genrec.errors import InvalidRequest
from genrec.filters import validate_where
from genrec.modes import MODES, Plan
from genrec.prompts import PromptRegistry
from genrec.retrieval.registry import Retrievers
from genrec.schema import RecommendRequest
from genrec.settings import Mode, Settings


def plan_request(
    settings: Settings,
    prompts: PromptRegistry,
    request: RecommendRequest,
    retrievers: Retrievers | None = None,
) -> Plan:
    """The request's plan; ``retrievers`` (when loaded) check the request's retriever name."""
    name: Mode = request.mode or settings.mode
    template = prompts.for_request(
        request.template or default_template(settings, prompts, name), name
    )
    n = request.candidates or settings.candidates
    k = request.k or settings.k
    if k < 1:
        raise InvalidRequest("k must be at least 1", param="k")
    if k > n:
        raise InvalidRequest(
            f"k={k} is more than the {n} candidates retrieved; lower k or raise candidates",
            param="k",
        )
    validate_where(request.filters, param="filters")
    if retrievers is not None:
        retrievers.get(request.retriever)  # a 400 on `retriever` before any work
    plan = Plan(
        request=request,
        mode=MODES[name],
        template=template,
        k=k,
        n=n,
        max_new_tokens=request.max_tokens or settings.max_new_tokens,
        settings=settings,
    )
    plan.mode.check(plan)
    return plan


def default_template(settings: Settings, prompts: PromptRegistry, mode: Mode) -> str | None:
    """settings.template where it serves ``mode``, else None (the mode's own default)."""
    name = settings.template
    if name and name in prompts.templates and prompts.get(name).serves(mode):
        return name
    return None
