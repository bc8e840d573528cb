"""What the ranker fine-tunes on: rank prompts built from the training part of a log.

For each user's training sequence (everything before the split's target; the target is never
read here), the last item is the *validation* target (early stopping and the fusion weight are
chosen on it, never on a test target) and a few earlier prefixes are *training* examples. A
training example's candidates are the trained retriever's top N for that prefix (hard
negatives) with the true next item at a uniformly random position, so no label is favoured; a
validation example's candidates are the retriever's top N (the target may be missing: then the
user scores 0, as at serving) in a random order. Why not the retriever's order: the retriever
was trained on these very sequences (the validation target included, since a suite's
retrievers learn from everything before the test target), so its order ranks the validation
target in-sample - NDCG@10 0.34 against 0.09 on the test target - and an LM that just copies
the first label would look best; shuffled, validation measures what the LM itself adds. The
fusion weight is chosen on the validation examples' retrieval scores: with ``held_out`` (a
retriever trained only on items before each validation target; a test-split suite gives one)
those scores are out of sample, as a served request's are; without it they are in-sample and
the weight leans to the retriever. Every prompt is rendered by the same template and chat
tokenizer that serve rank mode.

For the ``likelihood`` objective an example is a likelihood prompt (the need: the history
prefix) and the target's text as that mode scores it (the template's ``item`` block); training
examples need no candidates (the loss is the target text's cross-entropy), validation examples
carry the retriever's top N, in its order (each candidate is scored on its own, so order only
breaks ties), each candidate's text, and the prompt with no need stated (PMI's prior); both
prompts padded for the cache as likelihood mode pads them (``aligned_prompt``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genrec.data.item import Item
from genrec.errors import InvalidRequest
from genrec.modes.likelihood import aligned_prompt, check_template, scored_texts
from genrec.prompts import PromptTemplate, RenderedPrompt, infer_item_kind, render
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.base import Retriever
from genrec.schema import MAX_HISTORY
from genrec.tokenizer import ChatTokenizer

MIN_EXAMPLES = 8  # fewer training examples than this cannot show anything
OBJECTIVES = ("rank", "likelihood")


@dataclass
class RankExample:
    user: str
    prompt: str
    label_ids: list[int]  # the candidates' label tokens, in candidate order
    target: int  # the target's candidate position; -1 when the retriever missed it
    candidates: list[str]  # item IDs, in prompt order
    retrieval_scores: list[float]  # the retriever's score of each candidate
    prompt_tokens: int


@dataclass
class LikelihoodExample:
    user: str
    prompt: str  # the need, as likelihood mode renders it
    texts: list[str]  # scored after the prompt: the target's alone (training), each candidate's
    target: int  # the target's position in ``texts``; -1 when the retriever missed it
    candidates: list[str]  # item IDs, in ``texts`` order
    retrieval_scores: list[float]
    prompt_tokens: int
    null_prompt: str  # the same template with no need stated: PMI's unconditional prompt


@dataclass
class ExamplePlan:
    """How examples are drawn from the sequences."""

    candidates: int = 20
    prefixes_per_user: int = 4  # training prefixes drawn per user
    min_history: int = 3  # a prefix shows at least this many items
    history_len: int = 20  # items the prompt shows (the retriever reads them all)
    max_examples: int | None = None  # cap on training examples (a seeded sample)
    validation_users: int | None = None  # cap on validation users (a seeded sample)


def _query(history: Sequence[Item], k: int) -> RetrievalQuery:
    # The same shape as a served request: the last MAX_HISTORY items as history, older ones
    # excluded, so all of it stays masked.
    return RetrievalQuery(
        text="",
        history=tuple(history[-MAX_HISTORY:]),
        k=k,
        exclude=frozenset(h.id for h in history[:-MAX_HISTORY]),
    )


class ExampleBuilder:
    """Renders examples for one objective, template, tokenizer and retriever."""

    def __init__(
        self,
        template: PromptTemplate,
        tokenizer: ChatTokenizer,
        retriever: Retriever,
        items: Mapping[str, Item],
        plan: ExamplePlan,
        *,
        collection: str,
        objective: str = "rank",
        align: bool = False,
        held_out: Retriever | None = None,
    ) -> None:
        if objective not in OBJECTIVES:
            raise InvalidRequest(
                f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}",
                param="objective",
            )
        if not template.serves(objective):
            raise InvalidRequest(
                f"template {template.name!r} does not serve {objective} mode (its modes: "
                f"{', '.join(template.meta.modes)}); the {objective} objective trains what "
                f"{objective} mode reads",
                param="template",
            )
        if objective == "likelihood":
            check_template(template)
            if template.meta.scores == "query":
                raise InvalidRequest(
                    f"template {template.name!r} scores the query after each candidate "
                    "(query likelihood); the likelihood objective trains the candidate's text "
                    "after the need: fine-tune with a template that scores items "
                    "(likelihood_need)",
                    param="template",
                )
        elif template.meta.labels != "letters":
            raise InvalidRequest(
                f"template {template.name!r} labels candidates with numbers; fine-tune with a "
                "letters template (up to 52 single-token labels)",
                param="template",
            )
        self.template, self.tokenizer, self.retriever = template, tokenizer, retriever
        self.items, self.plan, self.collection = items, plan, collection
        self.objective, self.align = objective, align  # align: as settings.likelihood_align
        # Validation examples' candidates and scores: a retriever that never saw their target.
        self.held_out = held_out or retriever

    def example(
        self,
        user: str,
        history: Sequence[str],
        target: str,
        rng: random.Random | None,
        shuffle: random.Random | None = None,
    ) -> RankExample | LikelihoodExample | None:
        """One prompt. With ``rng`` (training) the target is put at a random position among
        the retriever's other top candidates (a likelihood training example needs the target
        alone); without it (validation) the candidates are the held-out retriever's own top N
        (``shuffle`` puts a rank example's in a random order). None when the retriever finds
        too few candidates."""
        if rng is not None and target not in self.items:
            return None
        hist = [self.items[i] for i in history]
        if self.objective == "likelihood" and rng is not None:
            return self._likelihood(user, hist, [(self.items[target], 0.0)], 0)
        n = self.plan.candidates
        found = (self.retriever if rng is not None else self.held_out).retrieve(_query(hist, n + 1))
        if rng is not None:
            pool = [c for c in found if c.item.id != target][: n - 1]
            if len(pool) < n - 1:
                return None
            pos = rng.randrange(n)
            target_score = next((c.score for c in found if c.item.id == target), None)
            floor = min(c.score for c in pool)
            cands = [(c.item, c.score) for c in pool]
            cands.insert(pos, (self.items[target], floor if target_score is None else target_score))
        else:
            cands = [(c.item, c.score) for c in found[:n]]
            if len(cands) < n:
                return None
            if shuffle is not None and self.objective == "rank":
                shuffle.shuffle(cands)
            ids = [it.id for it, _ in cands]
            pos = ids.index(target) if target in ids else -1
        if self.objective == "likelihood":
            return self._likelihood(user, hist, cands, pos)
        items = [it for it, _ in cands]
        rendered = self._render(items, hist)
        return RankExample(
            user=user,
            prompt=rendered.prompt,
            label_ids=self.tokenizer.label_token_ids(rendered.labels, rendered.prompt),
            target=pos,
            candidates=[it.id for it in items],
            retrieval_scores=[float(s) for _, s in cands],
            prompt_tokens=rendered.prompt_tokens,
        )

    def _render(self, items: list[Item], hist: Sequence[Item]) -> RenderedPrompt:
        return render(
            self.template,
            self.tokenizer,
            mode=self.objective,  # type: ignore[arg-type]
            candidates=items,
            history=list(hist[-self.plan.history_len :]),
            k=len(items),
            item_kind=infer_item_kind(items, collection=self.collection),
        )

    def _likelihood(
        self, user: str, hist: Sequence[Item], cands: list[tuple[Item, float]], pos: int
    ) -> LikelihoodExample:
        items = [it for it, _ in cands]
        rendered = self._render(items, hist)
        null = self._render(items, [])  # as LikelihoodMode's unconditional prompt: no need
        prompt, pad = aligned_prompt(
            rendered.prompt, rendered.prompt_tokens, self.tokenizer, self.align
        )
        null_prompt, _ = aligned_prompt(null.prompt, null.prompt_tokens, self.tokenizer, self.align)
        return LikelihoodExample(
            user=user,
            prompt=prompt,
            texts=scored_texts(rendered),
            target=pos,
            candidates=[it.id for it in items],
            retrieval_scores=[float(s) for _, s in cands],
            prompt_tokens=rendered.prompt_tokens + pad,
            null_prompt=null_prompt,
        )

    def build(
        self,
        sequences: Mapping[str, Sequence[str]],
        seed: int,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[list[Any], list[Any]]:
        """(training examples, validation examples), both deterministic for the seed."""
        plan, rng = self.plan, random.Random(seed)
        users = sorted(u for u, s in sequences.items() if len(s) >= plan.min_history + 1)
        train_cuts: list[tuple[str, int]] = []
        for user in users:
            seq = sequences[user]
            # Training targets are seq[min_history .. len-2]: the last item is validation's.
            cuts = list(range(plan.min_history, len(seq) - 1))
            rng.shuffle(cuts)
            train_cuts += [(user, t) for t in sorted(cuts[: plan.prefixes_per_user])]
        rng.shuffle(train_cuts)
        if plan.max_examples is not None:
            train_cuts = train_cuts[: plan.max_examples]
        val_users = list(users)
        rng.shuffle(val_users)
        if plan.validation_users is not None:
            val_users = val_users[: plan.validation_users]
        total, done = len(train_cuts) + len(val_users), 0
        train: list[Any] = []
        for user, t in train_cuts:
            seq = sequences[user]
            ex = self.example(user, seq[:t], seq[t], rng)
            if ex is not None:
                train.append(ex)
            done += 1
            if progress and done % 200 == 0:
                progress(done, total)
        val: list[Any] = []
        val_rng = random.Random(seed + 1)
        for user in val_users:
            seq = sequences[user]
            ex = self.example(user, seq[:-1], seq[-1], None, val_rng)
            if ex is not None:
                val.append(ex)
            done += 1
            if progress and done % 200 == 0:
                progress(done, total)
        if len(train) < MIN_EXAMPLES:
            raise InvalidRequest(
                f"only {len(train)} training examples could be built (at least {MIN_EXAMPLES} "
                f"are needed): users need at least {plan.min_history + 2} interactions on "
                "catalog items and the retriever enough candidates; give a larger log",
                param="log",
            )
        if not val:
            raise InvalidRequest(
                "no validation example could be built (each user's last training item is the "
                "validation target); give a larger log",
                param="log",
            )
        return train, val
