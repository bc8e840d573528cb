"""What a fine-tuning step minimises, and how validation scores: one class per serving mode.

- ``rank``: the cross-entropy of the target's label among the candidates' labels only (a
  softmax over the N label logits at the last position: exactly what rank mode reads from
  vLLM's masked log-probabilities). Only the last position's logits are computed.
- ``likelihood``: the token-level cross-entropy of the target item's text given the need (the
  history), the loss genrec's method prescribes: item i's score is log p(y_i | X). Only the
  text's positions get logits. Validation scores each of the retriever's top N as likelihood
  mode does (the same tokenization of prompt + text, the same calibration: ``calibrate``, whose
  PMI prior is recomputed with the weights being trained). Unless one is given, every evaluation
  scores all three calibrations and keeps the best: training moves what the model finds likely
  with no need stated (popularity, the title format), which PMI divides out, so the calibration
  that suits the base model need not suit the trained one.

Both score validation with genrec.evaluation.metrics' ``candidate_metrics``; the scores are what
the fusion weight is chosen on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genrec.errors import InvalidRequest
from genrec.evaluation.metrics import candidate_metrics
from genrec.modes.likelihood import calibrate
from genrec.training.finetune_data import OBJECTIVES, LikelihoodExample, RankExample

TEXT_BATCH = 32  # candidate texts scored in one batched forward after a shared prompt
SCORES = ("pmi", "mean", "sum")  # likelihood mode's calibrations (settings.likelihood_score)


class RankObjective:
    name = "rank"

    def __init__(self, tokenizer: Any, train: Sequence[RankExample], val: Sequence[RankExample]):
        _same_kind(RankExample, train, val)
        self.train, self.val = train, val
        self.tok = [tokenizer.encode(ex.prompt, add_special_tokens=False) for ex in train]
        self.vtok = [tokenizer.encode(ex.prompt, add_special_tokens=False) for ex in val]

    @property
    def mean_tokens(self) -> float:
        return sum(len(t) for t in self.tok) / len(self.tok)

    def loss(self, model: Any, i: int, device: Any) -> Any:
        logp = _label_logprobs(model, self.tok[i], self.train[i].label_ids, device)
        return -logp[self.train[i].target]

    def serving(self, best: dict[str, Any]) -> dict[str, Any]:
        return {}  # nothing beyond the weights and the fusion weight

    def validate(self, model: Any, device: Any) -> tuple[dict[str, float], list[list[float]]]:
        import torch

        model.eval()
        with torch.no_grad():
            scores = [
                _label_logprobs(model, ids, ex.label_ids, device).tolist()
                for ids, ex in zip(self.vtok, self.val, strict=True)
            ]
        model.train()
        return candidate_metrics(scores, [ex.target for ex in self.val]), scores


class LikelihoodObjective:
    name = "likelihood"

    def __init__(
        self,
        tokenizer: Any,
        train: Sequence[LikelihoodExample],
        val: Sequence[LikelihoodExample],
        score: str | None = None,
    ):
        _same_kind(LikelihoodExample, train, val)
        self.train, self.val, self.score, self.tokenizer = train, val, score, tokenizer
        # (all ids, where the text starts): prompt + text tokenized together, as vLLM does
        self.tok = [self._split(ex.prompt, ex.texts[ex.target]) for ex in train]

    def _split(self, prompt: str, text: str) -> tuple[list[int], int]:
        n = len(self.tokenizer.encode(prompt, add_special_tokens=False))
        ids = self.tokenizer.encode(prompt + text, add_special_tokens=False)
        if len(ids) <= n:
            raise InvalidRequest(f"the scored text {text!r} has no tokens", param="candidates")
        return ids, n

    @property
    def mean_tokens(self) -> float:
        return sum(len(ids) for ids, _ in self.tok) / len(self.tok)

    def loss(self, model: Any, i: int, device: Any) -> Any:
        import torch

        ids, n = self.tok[i]
        out = model(input_ids=torch.tensor([ids], device=device), logits_to_keep=len(ids) - n + 1)
        logits = out.logits[0, :-1].float()  # position j predicts token j + 1
        return torch.nn.functional.cross_entropy(logits, torch.tensor(ids[n:], device=device))

    def serving(self, best: dict[str, Any]) -> dict[str, Any]:
        """What serving must use to score as validation did (the manifest's entries)."""
        return {"likelihood_score": best["score"]}

    def validate(self, model: Any, device: Any) -> tuple[dict[str, Any], list[list[float]]]:
        """Metrics of the best calibration (named in ``score``; ``ndcg@10_by_score`` has
        each one's) and its scores."""
        import torch

        model.eval()
        priors: dict[tuple[str, str], float] = {}  # this round's weights: recomputed each time
        logprobs: list[list[list[float]]] = []
        with torch.no_grad():
            if self.score in (None, "pmi"):
                self._priors(model, device, priors)
            for ex in self.val:
                logprobs.append(self._text_logprobs(model, ex.prompt, ex.texts, device))
        model.train()
        targets = [ex.target for ex in self.val]
        best: tuple[dict[str, Any], list[list[float]]] | None = None
        by_score: dict[str, float] = {}
        for how in (self.score,) if self.score else SCORES:
            scores = [
                [
                    calibrate(how, lp, priors.get((ex.null_prompt, t), 0.0))
                    for lp, t in zip(lps, ex.texts, strict=True)
                ]
                for lps, ex in zip(logprobs, self.val, strict=True)
            ]
            metrics: dict[str, Any] = {**candidate_metrics(scores, targets), "score": how}
            by_score[how] = metrics["ndcg@10"]
            if best is None or metrics["ndcg@10"] > best[0]["ndcg@10"]:
                best = (metrics, scores)
        assert best is not None
        best[0]["ndcg@10_by_score"] = by_score
        return best

    def _priors(self, model: Any, device: Any, out: dict[tuple[str, str], float]) -> None:
        """Each distinct (unconditional prompt, text)'s mean log-probability."""
        by_prompt: dict[str, list[str]] = {}
        for ex in self.val:
            by_prompt.setdefault(ex.null_prompt, [])
            by_prompt[ex.null_prompt] += ex.texts
        for prompt, texts in by_prompt.items():
            unique = list(dict.fromkeys(texts))
            lps = self._text_logprobs(model, prompt, unique, device)
            for lp, t in zip(lps, unique, strict=True):
                out[(prompt, t)] = calibrate("mean", lp, 0.0)

    def _text_logprobs(
        self, model: Any, prompt: str, texts: Sequence[str], device: Any
    ) -> list[list[float]]:
        """Each text's token log-probabilities after ``prompt``: the prompt's forward once, its
        KV cache repeated for a batch of texts (right-padded: a causal model's earlier positions
        never see the padding)."""
        import torch

        prompt_ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        n = len(prompt_ids)
        out: list[list[float]] = [[] for _ in texts]
        shared: list[tuple[int, list[int]]] = []
        for j, text in enumerate(texts):
            ids = self.tokenizer.encode(prompt + text, add_special_tokens=False)
            if ids[:n] == prompt_ids:
                shared.append((j, ids[n:]))
            else:  # the text merged with the prompt's last token: score it on its own
                out[j] = _full_logprobs(model, ids, n, device)
        for start in range(0, len(shared), TEXT_BATCH):
            chunk = shared[start : start + TEXT_BATCH]
            first = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
            cache = first.past_key_values
            cache.batch_repeat_interleave(len(chunk))
            width = max(len(t) for _, t in chunk)
            batch = torch.tensor([t + [0] * (width - len(t)) for _, t in chunk], device=device)
            logits = model(input_ids=batch, past_key_values=cache, use_cache=True).logits.float()
            head = torch.log_softmax(first.logits[0, -1].float(), dim=-1)
            logp = torch.log_softmax(logits, dim=-1)
            for b, (j, t) in enumerate(chunk):
                row = [head[t[0]].item()]
                row += [logp[b, p - 1, t[p]].item() for p in range(1, len(t))]
                out[j] = row
        return out


def _full_logprobs(model: Any, ids: list[int], n: int, device: Any) -> list[float]:
    import torch

    logits = model(input_ids=torch.tensor([ids], device=device), logits_to_keep=len(ids) - n + 1)
    logp = torch.log_softmax(logits.logits[0, :-1].float(), dim=-1)
    return [logp[p, ids[n + p]].item() for p in range(len(ids) - n)]


def _label_logprobs(model: Any, prompt_ids: list[int], label_ids: list[int], device: Any) -> Any:
    """log p(label | prompt) over the candidates' labels only: rank mode's distribution."""
    import torch

    out = model(input_ids=torch.tensor([prompt_ids], device=device), logits_to_keep=1)
    logits = out.logits[0, -1].float()
    return torch.log_softmax(logits[torch.tensor(label_ids, device=device)], dim=-1)


def _same_kind(kind: type, *groups: Sequence[Any]) -> None:
    for group in groups:
        if any(not isinstance(ex, kind) for ex in group):
            raise InvalidRequest(
                f"the examples were not built for this objective (expected {kind.__name__})",
                param="objective",
            )


def objective_for(
    name: str, tokenizer: Any, train: Sequence[Any], val: Sequence[Any], score: str | None = None
) -> RankObjective | LikelihoodObjective:
    if name == "likelihood":
        return LikelihoodObjective(tokenizer, train, val, score)
    if name == "rank":
        return RankObjective(tokenizer, train, val)
    raise InvalidRequest(
        f"objective must be one of {', '.join(OBJECTIVES)}, not {name!r}", param="objective"
    )


__all__ = ["LikelihoodObjective", "RankObjective", "objective_for"]
