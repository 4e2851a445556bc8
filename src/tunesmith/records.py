"""The guide's four record formats: the shared vocabulary of data, encoding, evaluation and assets.

Each record is a small frozen dataclass with the guide's field names, so
``record.to_dict()`` is exactly the JSON line the guide shows (plus any extra user fields kept
in ``meta``, such as a time or group column). Records are created already valid: the readers in
``tunesmith.data`` check raw rows and turn the bad ones into rejects with a reason.

Two views every record offers, used by deduplication, leakage checks and evaluation:
``input_text()`` (what the model is given) and ``target_text()`` (what it should produce).
Two records with the same input and different targets are a *conflict*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

Task: TypeAlias = Literal["instruction", "classification", "qa", "chat"]
TASKS: tuple[Task, ...] = ("instruction", "classification", "qa", "chat")
ROLES: tuple[str, ...] = ("system", "user", "assistant")

# Fields each format requires and allows (the guide's "Format Examples").
REQUIRED_FIELDS: dict[Task, tuple[str, ...]] = {
    "instruction": ("instruction", "output"),
    "classification": ("text", "label"),
    "qa": ("question", "answer"),
    "chat": ("messages",),
}
OPTIONAL_FIELDS: dict[Task, tuple[str, ...]] = {
    "instruction": ("input",),
    "classification": (),
    "qa": ("context",),
    "chat": (),
}


@dataclass(frozen=True, slots=True)
class _Base:
    # Extra fields of the source row (time, group, id ...), kept so splits and reports can use them.
    meta: dict[str, Any] = field(default_factory=dict, compare=False, kw_only=True)
    # 1-based line (JSONL), row (CSV, Parquet) or index (JSON array) in the source file.
    line: int | None = field(default=None, compare=False, kw_only=True)

    task: ClassVar[Task]

    def _core(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self, *, with_meta: bool = True) -> dict[str, Any]:
        core = self._core()
        return {**self.meta, **core} if with_meta else core


@dataclass(frozen=True, slots=True)
class InstructionRecord(_Base):
    instruction: str
    output: str
    input: str = ""
    task: ClassVar[Task] = "instruction"

    def _core(self) -> dict[str, Any]:
        d: dict[str, Any] = {"instruction": self.instruction}
        if self.input:
            d["input"] = self.input
        d["output"] = self.output
        return d

    def input_text(self) -> str:
        return f"{self.instruction}\n{self.input}" if self.input else self.instruction

    def target_text(self) -> str:
        return self.output


@dataclass(frozen=True, slots=True)
class ClassificationRecord(_Base):
    text: str
    label: str
    task: ClassVar[Task] = "classification"

    def _core(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label}

    def input_text(self) -> str:
        return self.text

    def target_text(self) -> str:
        return self.label


@dataclass(frozen=True, slots=True)
class QARecord(_Base):
    question: str
    answer: str
    context: str = ""
    task: ClassVar[Task] = "qa"

    def _core(self) -> dict[str, Any]:
        d: dict[str, Any] = {"question": self.question}
        if self.context:
            d["context"] = self.context
        d["answer"] = self.answer
        return d

    def input_text(self) -> str:
        return f"{self.context}\n{self.question}" if self.context else self.question

    def target_text(self) -> str:
        return self.answer


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class ChatRecord(_Base):
    messages: tuple[Message, ...]
    task: ClassVar[Task] = "chat"

    def _core(self) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in self.messages]}

    def input_text(self) -> str:
        """Every turn but the last (the final assistant reply is the target)."""
        return "\n".join(f"{m.role}: {m.content}" for m in self.messages[:-1])

    def target_text(self) -> str:
        return self.messages[-1].content


Record: TypeAlias = InstructionRecord | ClassificationRecord | QARecord | ChatRecord
RECORD_TYPES: dict[Task, type[Record]] = {
    "instruction": InstructionRecord,
    "classification": ClassificationRecord,
    "qa": QARecord,
    "chat": ChatRecord,
}


def record_from_dict(task: Task, data: dict[str, Any], *, line: int | None = None) -> Record:
    """Build a record from an already-validated dict in the guide's field names.

    Fields that are not part of the format go to ``meta``. Raises ``KeyError`` or ``TypeError``
    on a dict that was not validated first (``tunesmith.data`` does that, with reasons).
    """
    known = set(REQUIRED_FIELDS[task]) | set(OPTIONAL_FIELDS[task])
    meta = {k: v for k, v in data.items() if k not in known}
    if task == "chat":
        messages = tuple(Message(role=m["role"], content=m["content"]) for m in data["messages"])
        return ChatRecord(messages=messages, meta=meta, line=line)
    kwargs = {k: data[k] for k in known if k in data and data[k] is not None}
    if task == "classification":
        kwargs["label"] = str(kwargs["label"])
    return RECORD_TYPES[task](**kwargs, meta=meta, line=line)
