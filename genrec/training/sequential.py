"""SASRec (Kang & McAuley 2018) trained with full cross-entropy over the catalog.

A causal transformer reads a user's last `max_len` items (oldest first) and, at every position,
predicts the next item with a softmax over ALL items - not sampled negatives with BCE, which is
what makes SASRec competitive on small catalogs. Above `full_softmax_items` items that softmax
costs too much per step (300k items x every position), so training switches to a sampled
softmax: the true next item against `negatives` items drawn uniformly per batch (shared by its
rows; a draw that hits the true item is masked), batches of `sampled_batch_size`.

The input item embedding is also the output layer and there is no output bias, so an item's
score is exactly user_vector . item_vector: the item vectors can live in an inner-product vector
store and be queried with the user vector.

Item indices are 0..n_items-1; internally index 0 is padding and item i is row i + 1.
Training is deterministic for a seed and a thread count (CPU kernels, no nondeterministic ops).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genrec.evaluation.metrics import DEFAULT_KS
from genrec.training.sequences import as_sequences
from genrec.training.validation import BATCH_CELLS, rank_users

Progress = Callable[[dict], None]


@dataclass(frozen=True)
class SASRecParams:
    # Defaults chosen on the ml-latest-small validation split under a ~9-minute budget (the
    # training report has the runs): one block converged faster per second than two, and 50
    # positions with lr 1e-2 beat 200 positions (lr 5e-3 or 1e-2, batch 16/32) at equal time.
    hidden: int = 64
    layers: int = 1
    heads: int = 1
    dropout: float = 0.2
    max_len: int = 50
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 200
    eval_every: int = 3  # epochs between validation checks
    patience: int = 3  # checks without a better validation NDCG@10 before stopping
    # torch intra-op threads; results are reproducible for a fixed count. One thread was faster
    # than two on the shared 2-core machine (two threads spin against other processes).
    threads: int = 1
    # Sampled softmax above this many items (full cross-entropy below: better on small
    # catalogs, and what the defaults above were chosen with).
    full_softmax_items: int = 50_000
    negatives: int = 256  # 2048: 1.3 s CPU a step at 170k items, 256: 0.48 s (batch 256)
    # On the 30k synthetic (18k items, sampled forced, 10 epochs): batch 32 0.315 validation
    # NDCG@10 in 75 s CPU, batch 64 0.188 in 59 s; 3 epochs of batch 256 0.031 (full softmax,
    # 3 epochs: 0.362 in 267 s). Steps matter more than rows a step.
    sampled_batch_size: int = 32

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")
        for name in (
            "hidden",
            "layers",
            "heads",
            "max_len",
            "batch_size",
            "eval_every",
            "negatives",
            "sampled_batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecParams.{name} must be positive")


class _Block(nn.Module):
    """Pre-norm transformer block: causal multi-head self-attention, then a GELU feed-forward."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d)
        )
        # No dropout on the attention weights: its (batch, heads, n, n) masks cost more CPU
        # time than the rest of the dropout together, and keep SDPA off its fused kernel.
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, n, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, heads, n, d_head)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.ff(self.ln2(x)))


class _Net(nn.Module):
    def __init__(self, n_items: int, p: SASRecParams) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, p.hidden, padding_idx=0)
        self.positions = nn.Embedding(p.max_len, p.hidden)
        self.drop = nn.Dropout(p.dropout)
        self.blocks = nn.ModuleList(_Block(p.hidden, p.heads, p.dropout) for _ in range(p.layers))
        self.ln = nn.LayerNorm(p.hidden)
        self.max_len = p.max_len
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(batch, n) left-padded internal indices -> (batch, n, d) hidden states."""
        n = seq.shape[1]
        # The last column is always position max_len - 1, so a short history without padding
        # gets the same positions (and the same output) as the padded one.
        pos = torch.arange(self.max_len - n, self.max_len, device=seq.device)
        x = F.embedding(seq, self.item_table(), padding_idx=0) + self.positions(pos)[None]
        x = self.drop(x)
        real = seq != 0
        causal = torch.ones(n, n, dtype=torch.bool, device=seq.device).tril()
        # A query sees earlier real items and always itself, so no row is fully masked (a pad
        # query would otherwise give NaN); pad outputs are never used.
        mask = (causal[None] & real[:, None, :]) | torch.eye(n, dtype=torch.bool)[None]
        mask = mask[:, None]  # broadcast over heads
        for block in self.blocks:
            x = block(x, mask)
        return self.ln(x)

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, hidden), row 0 padding: input and output (sequential_text adds)."""
        return self.items.weight

    def item_matrix(self) -> torch.Tensor:
        return self.item_table()[1:]


def sasrec_bytes(n_items: int, n_events: int, p: SASRecParams) -> int:
    """Peak memory of fitting: the item table with its gradient and two Adam moments (and a
    best-epoch copy), the training windows, one step's logits and activations, one validation
    batch of scores."""
    table = (n_items + 1) * p.hidden * 4 * 5
    windows = (n_events + n_events // p.max_len + 1) * 8 * 2 * 2
    sampled = n_items > p.full_softmax_items
    batch = p.sampled_batch_size if sampled else p.batch_size
    width = p.negatives + 1 if sampled else n_items
    step = batch * p.max_len * (width * 4 * 3 + p.hidden * 4 * 40 * p.layers)
    return int(table + windows + step + BATCH_CELLS * 4 * 3 + 300_000_000)


def _windows(sequences: Sequence[Sequence[int]], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Training examples: (inputs, next-item targets), internal indices, left-padded to max_len.

    A long sequence is cut into consecutive windows from its end, so every transition is trained
    on once per epoch (LlamaRec's sliding window with step max_len)."""
    inputs, targets = [], []
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64) + 1
        for end in range(len(s) - 1, 0, -max_len):
            start = max(0, end - max_len)
            row_in = np.zeros(max_len, dtype=np.int64)
            row_out = np.zeros(max_len, dtype=np.int64)
            row_in[max_len - (end - start) :] = s[start:end]
            row_out[max_len - (end - start) :] = s[start + 1 : end + 1]
            inputs.append(row_in)
            targets.append(row_out)
    if not inputs:
        raise ValueError("no sequence has two or more items: nothing to train SASRec on")
    return np.stack(inputs), np.stack(targets)


def _batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator) -> list:
    """Shuffled batches of windows of similar length, so little compute goes to padding: a
    random order, stably sorted by length bucket, cut into batches, the batches shuffled."""
    perm = torch.randperm(len(lengths), generator=generator)
    order = perm[torch.argsort(lengths[perm] // 16, stable=True)]
    batches = list(order.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator)]


def _sampled_loss(
    net: _Net, h: torch.Tensor, y: torch.Tensor, negatives: int, generator: torch.Generator
) -> torch.Tensor:
    """Cross-entropy of the true next item against uniformly drawn items (internal indices)."""
    n_items = net.items.num_embeddings - 1
    neg = torch.randint(1, n_items + 1, (negatives,), generator=generator)
    table = net.item_table()
    pos = (h * table[y]).sum(-1, keepdim=True)
    other = (h @ table[neg].T).masked_fill(neg[None, :] == y[:, None], float("-inf"))
    logits = torch.cat([pos, other], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long))


class SASRec:
    def __init__(self, n_items: int, params: SASRecParams = SASRecParams()) -> None:
        self.n_items = n_items
        self.params = params
        self.net = _Net(n_items, params)
        self.net.eval()

    # ---- training ---------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        sequences: Sequence[Sequence[int]],
        n_items: int,
        params: SASRecParams = SASRecParams(),
        *,
        validation: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
        seed: int = 0,
        progress: Progress | None = None,
        max_seconds: float | None = None,
        net: nn.Module | None = None,
    ) -> tuple[Self, dict]:
        """Train; with `validation` (histories, targets) keep the epoch with the best NDCG@10
        (checked every `eval_every` epochs, stopping after `patience` checks without a gain);
        without it, train exactly `max_epochs`. `max_seconds` stops at the first batch that
        crosses it (that epoch is then checked like any last one). ``net`` replaces the
        ID-only network (a text-aware one). Returns the model and a report."""
        started, cpu_started = time.perf_counter(), time.process_time()
        sequences = as_sequences(sequences)
        sequences.check(n_items, "sequences")
        sampled = n_items > params.full_softmax_items
        batch_size = params.sampled_batch_size if sampled else params.batch_size
        torch.set_num_threads(params.threads)
        torch.manual_seed(seed)
        model = cls(n_items, params)
        if net is not None:
            model.net = net
        net = model.net
        x_all, y_all = (torch.from_numpy(a) for a in _windows(sequences, params.max_len))
        lengths = (y_all != 0).sum(dim=1)
        shuffle = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(net.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        report: dict = {
            "checks": [],
            "best_epoch": 0,
            "best_ndcg@10": None,
            "stopped": "epochs",
            "loss": f"sampled softmax ({params.negatives} negatives)" if sampled else "full",
        }
        best_state, best, bad_checks, epoch = None, -math.inf, 0, 0
        for epoch in range(1, params.max_epochs + 1):
            net.train()
            total, count = 0.0, 0
            for idx in _batches(lengths, batch_size, shuffle):
                width = int(lengths[idx].max())  # left-padded: the last `width` columns hold all
                x, y = x_all[idx, -width:], y_all[idx, -width:]
                h = net(x)
                real = y != 0
                # Logits only where there is a next item: the softmax over the whole catalog
                # is the expensive part, pad positions would waste it.
                if sampled:
                    loss = _sampled_loss(net, h[real], y[real], params.negatives, shuffle)
                else:
                    logits = h[real] @ net.item_matrix().T
                    loss = F.cross_entropy(logits, y[real] - 1)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(real.sum())
                count += int(real.sum())
                if max_seconds is not None and time.perf_counter() - started >= max_seconds:
                    break  # at 300k items an epoch is minutes: the budget holds within one
            net.eval()
            elapsed = time.perf_counter() - started
            event = {"epoch": epoch, "loss": total / max(count, 1), "seconds": round(elapsed, 2)}
            if validation is not None and (epoch % params.eval_every == 0):
                metrics = model.evaluate(*validation)
                event["validation"] = metrics
                report["checks"].append({"epoch": epoch, **metrics})
                if metrics["ndcg@10"] > best:
                    best, bad_checks = metrics["ndcg@10"], 0
                    best_state = copy.deepcopy(net.state_dict())
                    report["best_epoch"] = epoch
                else:
                    bad_checks += 1
            if progress is not None:
                progress(event)
            if validation is not None and bad_checks >= params.patience:
                report["stopped"] = "early"
                break
            if max_seconds is not None and elapsed >= max_seconds:
                report["stopped"] = "time"
                break
        if validation is not None:
            # The last epoch may not have been checked; check it so the best is really the best.
            if not report["checks"] or report["checks"][-1]["epoch"] != epoch:
                metrics = model.evaluate(*validation)
                report["checks"].append({"epoch": epoch, **metrics})
                if metrics["ndcg@10"] > best:
                    best, best_state = metrics["ndcg@10"], copy.deepcopy(net.state_dict())
                    report["best_epoch"] = epoch
            if best_state is not None:
                net.load_state_dict(best_state)
            report["best_ndcg@10"] = best
        else:
            report["best_epoch"] = epoch
        report["epochs"] = epoch
        report["seconds"] = round(time.perf_counter() - started, 2)
        # CPU time too: on a shared machine wall time says more about the neighbours.
        report["cpu_seconds"] = round(time.process_time() - cpu_started, 2)
        report["train_windows"] = len(x_all)
        return model, report

    def evaluate(
        self, histories: Sequence[Sequence[int]], targets: Sequence[int]
    ) -> dict[str, float]:
        """Full-ranking metrics (history masked) for these histories and targets, ranked a
        batch of users at a time."""
        metrics, _ = rank_users(
            self, as_sequences(histories), np.asarray(targets, dtype=np.int64), DEFAULT_KS
        )
        return metrics

    # ---- inference --------------------------------------------------------------------------

    def user_vectors(self, histories: Sequence[Sequence[int]], batch_size: int = 256) -> np.ndarray:
        """(batch, hidden) float32: the transformer's output at each history's last item.

        A few histories (a request, its explanation) run on one thread: waiting for a second
        thread on a busy machine cost ~400 ms against 0.4 ms. OpenMP thread counts are per
        calling thread, so other threads keep theirs."""
        threads = torch.get_num_threads()
        if len(histories) <= 16 and threads > 1:
            torch.set_num_threads(1)
        try:
            return self._user_vectors(histories, batch_size)
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)

    @torch.inference_mode()
    def _user_vectors(self, histories: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
        self.net.eval()
        out = np.zeros((len(histories), self.params.hidden), dtype=np.float32)
        max_len = self.params.max_len
        for start in range(0, len(histories), batch_size):
            chunk = [list(h)[-max_len:] for h in histories[start : start + batch_size]]
            width = max(1, max(len(h) for h in chunk))  # pad only to the longest in the chunk
            seq = torch.zeros(len(chunk), width, dtype=torch.long)
            for row, h in enumerate(chunk):
                if h:
                    if min(h) < 0 or max(h) >= self.n_items:
                        raise ValueError(
                            f"histories[{start + row}] holds an item index outside "
                            f"0..{self.n_items - 1}"
                        )
                    seq[row, width - len(h) :] = torch.tensor(h) + 1
            out[start : start + len(chunk)] = self.net(seq)[:, -1].numpy()
        return out

    @torch.inference_mode()
    def item_vectors(self) -> np.ndarray:
        """(n_items, hidden) float32; a score is user_vector . item_vector, nothing else."""
        return self.net.item_matrix().numpy().copy()

    @torch.inference_mode()
    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        items = self.net.item_matrix().numpy()  # a view: no copy of the table per batch
        return self.user_vectors(histories) @ items.T

    batch_scores = scores

    # ---- persistence ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "n_items": self.n_items,
            "params": asdict(self.params),
            "weights": self.net.state_dict(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Self:
        model = cls(int(state["n_items"]), SASRecParams(**state["params"]))
        model.net.load_state_dict(state["weights"])
        model.net.eval()
        return model

    def save(self, path: Path) -> None:
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: Path) -> Self:
        return cls.from_state_dict(torch.load(path, map_location="cpu", weights_only=True))
