"""The model's own tokenizer and chat template, loaded locally: genrec renders every prompt
itself, so every engine receives the same string (and rank mode knows its label tokens)."""

from __future__ import annotations

from typing import Any

from genrec.errors import ConfigError, InvalidRequest


class ChatTokenizer:
    """The model's own tokenizer and chat template, loaded locally for every engine."""

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer

    @classmethod
    def load(cls, model: str) -> ChatTokenizer:
        from transformers import AutoTokenizer

        try:
            return cls(AutoTokenizer.from_pretrained(model))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the tokenizer of {model}: {exc}") from exc

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.hf, "chat_template", None):
            return self.hf.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # A base model without a chat template: a plain transcript.
        parts = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(parts) + "\n\nAssistant:"

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False)

    def count(self, text: str) -> int:
        return len(self.encode(text))

    @property
    def separator(self) -> str | None:
        """A token the model saw between pretraining documents (``<|endoftext|>``, else its
        end-of-text token): left padding that adds no words. None when there is none."""
        for token in ("<|endoftext|>", getattr(self.hf, "eos_token", None)):
            if token and self.single_token(token) is not None:
                return token
        return None

    def single_token(self, text: str) -> int | None:
        ids = self.hf.encode(text, add_special_tokens=False)
        return ids[0] if len(ids) == 1 else None

    def label_token_ids(self, labels: list[str], prompt: str) -> list[int]:
        """The one token each label is, in the form the model writes it right after ``prompt``:
        bare ("A") after whitespace such as the generation prompt's newline, else with a
        leading space (" A") after an answer prefix such as "Answer:"."""
        lead = "" if not prompt or prompt[-1].isspace() else " "
        ids: list[int] = []
        for label in labels:
            tid = self.single_token(lead + label)
            if tid is None:
                raise InvalidRequest(
                    f"label {lead + label!r} is not a single token for this model, so rank mode "
                    f"cannot score it in one pass; use a letters template or fewer candidates",
                    param="candidates",
                )
            ids.append(tid)
        if len(set(ids)) != len(ids):
            raise InvalidRequest("candidate labels collide as tokens", param="template")
        return ids
