"""OpenAI-compatible request bodies, plus RouterLLM's routing preferences carried in extra fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from router_deployments.objectives import ObjectiveWeights
from serve_app.config import ROUTER_MODEL


class ChatMessage(BaseModel):
    """One OpenAI chat message; its content is text, a list of parts, or (an assistant's turn that called tools,
    as agent clients send it back) null."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict] | None = None

    @model_validator(mode="after")
    def _content_or_tool_calls(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and (self.model_extra or {}).get("tool_calls")):
            raise ValueError("content may be null only in an assistant message with tool_calls")
        return self

    def text(self) -> str:
        """Plain text of the message (text parts of a multi-part content list joined; '' for null content)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(part.get("text", "")) for part in self.content if part.get("type", "text") == "text")


class RouterPreferences(BaseModel):
    """Per-request routing preferences: `extra_body={"router": {...}}` with the openai client."""

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = Field(None, description="Registry name of the strategy to route with.")
    weights: ObjectiveWeights | None = Field(None, description="Weights for quality, cost, carbon, latency.")
    carbon_budget_left: float = Field(1.0, ge=0, le=1, description="Fraction of the carbon budget still unspent.")


class StreamOptions(BaseModel):
    """OpenAI's `stream_options`: `include_usage` adds token counts to the last chunk."""

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion body RouterLLM honours; other OpenAI fields are accepted."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(ROUTER_MODEL, description="'router' to route, or an expert name to bypass routing.")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    # Unset: the chosen expert's own defaults from the catalog (a small model wants a low temperature).
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    router: RouterPreferences = Field(default_factory=RouterPreferences)

    @field_validator("messages")
    @classmethod
    def _has_content(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if not any(m.text().strip() for m in messages):
            raise ValueError("messages must contain some non-empty text")
        return messages

    def routing_text(self) -> str:
        """What the router reads: every message's text, oldest first (the encoder keeps the end)."""
        return "\n".join(m.text() for m in self.messages)

    def plain_messages(self) -> list[dict[str, str]]:
        """The messages as role/content pairs of plain text, as experts take them."""
        return [{"role": m.role, "content": m.text()} for m in self.messages]

    def stop_list(self) -> list[str] | None:
        """`stop` as a list (OpenAI allows one string or a list)."""
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def unsupported(self) -> tuple[str, str] | None:
        """The first OpenAI field this request sets that would change the answer but that RouterLLM's experts
        cannot honour, as (param, why); None when every field it sets is honoured or harmless."""
        extra = self.model_extra or {}
        for name, check in UNSUPPORTED.items():
            why = check(extra.get(name), extra) if name in extra else None
            if why:
                return name, f"{name}: {why}"
        return None


def _tools(value: Any, extra: dict) -> str | None:
    if value and extra.get("tool_choice", "auto") != "none":
        return "the experts behind this router do not call tools; leave tools out or set tool_choice to 'none'"
    return None


def _when(refused: Any, why: str):
    """A check refusing a field when `refused(value)` holds."""
    return lambda value, extra: why if value is not None and refused(value) else None


# OpenAI fields that change what the answer means; a request setting one is refused (400 unsupported_parameter)
# rather than answered as if it had not. Fields not listed are honoured (above) or carry nothing an answer depends on
# (user, metadata, store, parallel_tool_calls, service_tier, ...).
UNSUPPORTED: dict[str, Any] = {
    "n": _when(lambda v: v != 1, "one choice per request is generated; send n=1 or leave it out"),
    "tools": _tools,
    "functions": _tools,
    "response_format": _when(
        lambda v: not (isinstance(v, dict) and v.get("type", "text") == "text"),
        "only {'type': 'text'} is supported: the experts do not enforce JSON output",
    ),
    "logprobs": _when(bool, "the experts do not return log probabilities"),
    "top_logprobs": _when(bool, "the experts do not return log probabilities"),
    "logit_bias": _when(bool, "the experts do not take logit biases"),
    "presence_penalty": _when(bool, "the experts do not apply presence penalties; send 0 or leave it out"),
    "frequency_penalty": _when(bool, "the experts do not apply frequency penalties; send 0 or leave it out"),
    "modalities": _when(lambda v: v != ["text"], "the experts answer in text only"),
    "audio": _when(bool, "the experts answer in text only"),
    "prediction": _when(bool, "predicted outputs are not supported"),
}


class RouteRequest(BaseModel):
    """`POST /v1/route`: the routing decision alone, for a bare prompt or the same body as a chat completion (its
    generation fields are accepted and unused: nothing is generated)."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(ROUTER_MODEL, description="'router' to route, or an expert name (its direct decision).")
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    prompt: str | None = Field(None, min_length=1)
    router: RouterPreferences = Field(default_factory=RouterPreferences)

    def routing_text(self) -> str:
        """The bare prompt, else the messages' text oldest first; ValueError when there is neither."""
        if self.prompt is not None:
            return self.prompt
        if self.messages:
            return "\n".join(m.text() for m in self.messages)
        raise ValueError("give either 'messages' or 'prompt'")


class FeedbackRequest(BaseModel):
    """`POST /v1/feedback`: a quality score for an answered request (its `routing.request_id`)."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=256)
    score: float = Field(description="Quality in [0, 1]; out of range is refused with 422.")


class RollbackRequest(BaseModel):
    """`POST /admin/rollback`: return a learned strategy to its previous published version."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1)


class UnpinRequest(BaseModel):
    """`POST /admin/unpin`: let a rolled-back strategy's publishes go live again."""

    model_config = ConfigDict(extra="forbid")

    strategy: str = Field(min_length=1)
