"""The OpenAI request bodies the server accepts, as pydantic models (checked before any work).

Fields the server does not use (``frequency_penalty``, ``logprobs``, ...) are ignored, as
OpenAI-compatible servers do; fields it uses are typed and bounded, so a wrong type or an out-of-range
value is a 400 naming the field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_N = 8  # choices per request: each is a full generation
MAX_STOPS = 4  # as OpenAI
MAX_INPUTS = 256  # texts per classify request, prompts per completions request


def _at_most(value: str | list[str], limit: int) -> str | list[str]:
    if isinstance(value, list) and len(value) > limit:
        raise ValueError(f"at most {limit} items per request, got {len(value)}: split the list")
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)  # OpenAI's default is 1
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return [s for s in stops if s][:MAX_STOPS]


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # newer clients' name for max_tokens


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(min_length=1)

    @field_validator("prompt")
    @classmethod
    def _few_enough(cls, value: str | list[str]) -> str | list[str]:
        return _at_most(value, MAX_INPUTS)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ClassifyRequest(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _few_enough(cls, value: str | list[str]) -> str | list[str]:
        return _at_most(value, MAX_INPUTS)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
