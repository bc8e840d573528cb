"""The one place a request's prompt is rendered.

A :class:`PromptFrame` is everything a request's prompt is made of except its candidates (the
template, the model's tokenizer, the mode, the history shown, the query, k, the caller's system
message, what the items are). The Recommender renders the prompt through it, within the context
left after the mode's answer; a mode that needs the prompt again with other candidates (rank's
reversed order) or without the need stated (likelihood's unconditional prompt) renders through
the same frame (``Job.rerender``), so the framing cannot drift between the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from genrec.data.item import Item
from genrec.prompts import PromptTemplate, RenderedPrompt, infer_item_kind, render
from genrec.settings import Mode
from genrec.tokenizer import ChatTokenizer


@dataclass(frozen=True)
class PromptFrame:
    template: PromptTemplate
    tokenizer: ChatTokenizer
    mode: Mode
    history: tuple[Item, ...]  # the history items the prompt shows (the latest few)
    query: str | None
    k: int
    system: str | None
    item_kind: str  # "movie", a shared category, else "item" (genrec.prompts.infer_item_kind)

    @classmethod
    def of(
        cls,
        template: PromptTemplate,
        tokenizer: ChatTokenizer,
        mode: Mode,
        *,
        history: Sequence[Item],
        candidates: Sequence[Item],
        query: str | None,
        k: int,
        system: str | None,
        collection: str,
    ) -> PromptFrame:
        kind = infer_item_kind(list(candidates), collection=collection)
        return cls(template, tokenizer, mode, tuple(history), query, k, system, kind)

    def render(
        self,
        candidates: list[Item],
        *,
        history: bool = True,
        query: bool = True,
        max_prompt_tokens: int | None = None,
    ) -> RenderedPrompt:
        """The prompt for ``candidates``; without the history or the query when asked;
        PromptTooLong when it is over ``max_prompt_tokens``."""
        return render(
            self.template,
            self.tokenizer,
            mode=self.mode,
            candidates=candidates,
            history=list(self.history) if history else [],
            query=self.query if query else None,
            k=self.k,
            system=self.system,
            item_kind=self.item_kind,
            max_prompt_tokens=max_prompt_tokens,
        )
