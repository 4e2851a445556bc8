"""Prompts for causal LMs: records as chat messages, rendered and tokenized.

Training, evaluation, the review app and the server all build prompts here, so the model is
asked in exactly the way it was trained.

**Messages.** Every record becomes a list of chat messages (:func:`record_messages`):

- instruction: user = ``instruction`` (plus a blank line and ``input`` when there is one),
  assistant = ``output``;
- qa: user = ``Context: ...`` and ``Question: ...`` (or just the question without context),
  assistant = ``answer``;
- chat: the messages as they are (every assistant turn is a response);
- classification on a causal model ("classification as instruction"): user = "Classify the
  text as one of: <labels>. Answer with the label only." plus the text, assistant = the label.

The messages are rendered with the tokenizer's chat template when it has one. Without one,
the plain template :data:`PLAIN_TEMPLATE` is used: each turn is ``### User:`` / ``### Assistant:``
/ ``### System:`` on its own line, then the content, then a blank line; the assistant's content is
followed by the EOS token; the BOS token (if the tokenizer has one) starts the sequence.

**Responses.** :func:`render_segments` renders a conversation one turn at a time
(``apply_chat_template(messages[:i], add_generation_prompt=True)`` then ``messages[:i+1]``) so
the response spans are exact, and the prompt part of each span is tokenized exactly as the
generation prompt is at evaluation time. :func:`response_labels` says which tokens of a span are
learned: its content and the end-of-turn token that closes it (EOS, so the model learns to stop).

Costs: string work and one tokenizer call per span; nothing loads a model. Raises
:class:`~tunesmith.errors.DataError` for a conversation whose replies cannot be located.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.errors import DataError
from tunesmith.records import (
    ChatRecord,
    ClassificationRecord,
    InstructionRecord,
    QARecord,
    Record,
)
from tunesmith.train.encoding import IGNORE_INDEX

GENERATIVE_TASKS = ("instruction", "qa", "chat")
# Classification records finetuning a causal LM: trained as instructions (see record_messages)
# and scored by label likelihood (tunesmith.evaluate.prompting.label_nlls).
CLASSIFICATION_AS_INSTRUCTION = "classification-as-instruction"

PLAIN_TEMPLATE = "### {role}:\n{content}\n\n"  # the assistant's content is followed by EOS


def classification_prompt(text: str, labels: Sequence[str]) -> str:
    """The user turn of classification-as-instruction: the labels are named in the prompt."""
    return (
        f"Classify the text as one of: {', '.join(labels)}. Answer with the label only.\n\n"
        f"Text: {text}"
    )


def record_messages(record: Record, labels: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat messages for one record (see the module docstring for each format)."""
    if isinstance(record, ChatRecord):
        return [m.to_dict() for m in record.messages]
    if isinstance(record, InstructionRecord):
        user = f"{record.instruction}\n\n{record.input}" if record.input else record.instruction
        return [{"role": "user", "content": user}, {"role": "assistant", "content": record.output}]
    if isinstance(record, QARecord):
        user = (
            f"Context: {record.context}\n\nQuestion: {record.question}"
            if record.context
            else record.question
        )
        return [{"role": "user", "content": user}, {"role": "assistant", "content": record.answer}]
    if isinstance(record, ClassificationRecord):
        return [
            {"role": "user", "content": classification_prompt(record.text, labels)},
            {"role": "assistant", "content": record.label},
        ]
    raise TypeError(f"not a record: {type(record).__name__}")


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
    text = tokenizer.bos_token or ""
    for m in messages:
        text += PLAIN_TEMPLATE.format(role=m["role"].capitalize(), content=m["content"])
        if m["role"] == "assistant":
            # Put EOS right after the content (before the blank line) so it is part of the span.
            text = text[: -len("\n\n")] + (tokenizer.eos_token or "") + "\n\n"
    if generation_prompt:
        text += "### Assistant:\n"
    return text


def render_segments(tokenizer: Any, messages: list[dict[str, str]]) -> list[tuple[str, bool]]:
    """The conversation as ``(text, is_response)`` pieces whose concatenation is the whole.

    Raises :class:`DataError` when a chat template does not render turn by turn (a template
    that rewrites earlier turns), since the response spans could not be located.
    """
    segments: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        if i == 0:
            raise DataError("a conversation starts with an assistant turn; it needs a user turn first.")
        prompt = render(tokenizer, messages[:i], generation_prompt=True)
        full = render(tokenizer, messages[: i + 1], generation_prompt=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise DataError(
                "the tokenizer's chat template does not render a conversation turn by turn, so "
                "the assistant replies cannot be located for the response-only loss.",
                hint="Use a model whose template appends turns, or remove its chat_template to "
                "use tunesmith's plain template.",
            )
        segments.append((prompt[len(done) :], False))
        segments.append((full[len(prompt) :], True))
        done = full
    return segments


def token_ids(tokenizer: Any, text: str) -> list[int]:
    # The template already holds every special token (BOS, turn markers, EOS).
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def response_labels(ids: list[int], eos_id: int | None) -> tuple[list[int], list[int]]:
    """Labels of one response span: learned up to and including its EOS; EOS added if absent.

    What a template prints after the end-of-turn token (a newline) is not learned: generation
    stops at EOS and never produces it.
    """
    if eos_id is None:
        return ids, list(ids)
    if eos_id not in ids:
        ids = ids + [eos_id]
        return ids, list(ids)
    end = ids.index(eos_id) + 1
    return ids, ids[:end] + [IGNORE_INDEX] * (len(ids) - end)


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a generation prompt: the conversation so far plus the assistant header."""
    return token_ids(tokenizer, render(tokenizer, messages, generation_prompt=True))


def response_ids(tokenizer: Any, messages: list[dict[str, str]], response: str) -> list[int]:
    """The tokens that follow :func:`prompt_ids` when the assistant says ``response``.

    Ends with EOS (and nothing after it): what label-likelihood scoring sums over.
    """
    full = messages + [{"role": "assistant", "content": response}]
    segments = render_segments(tokenizer, full)
    ids, labels = response_labels(token_ids(tokenizer, segments[-1][0]), tokenizer.eos_token_id)
    return [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
