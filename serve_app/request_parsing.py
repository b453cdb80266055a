"""Reading a request: body size, JSON, the pydantic schema and the prompt limits, each failure an OpenAI-style
error (serve_app.errors); and what the experts are asked (a GenerationRequest from a chat body).
"""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from experts.base import GenerationRequest
from serve_app.api_models import ChatCompletionRequest
from serve_app.config import ServerConfig
from serve_app.errors import APIError, bad_request

Body = TypeVar("Body", bound=BaseModel)

# Room for the JSON envelope (roles, options) beside the prompt in a body-size check.
ENVELOPE_BYTES = 65536


def validation_message(e: ValidationError) -> tuple[str, str | None]:
    """The first validation error as (message, param): 'messages.0.role: Input should be ...', 'messages.0.role'."""
    first = e.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ())) or None
    return f"{param}: {first.get('msg')}" if param else str(first.get("msg")), param


def check_json_content_type(request: Request) -> None:
    """415 unless the body is declared JSON. Besides saying what to send, this keeps other web pages out: a browser
    sends text/plain, form and multipart bodies to any origin without asking, but JSON only after a CORS preflight,
    which this server never grants, so a page an operator visits cannot post to /admin/rollback or /v1/feedback."""
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise APIError(
            415,
            f"send the body as JSON with the header 'Content-Type: application/json' (got {declared or 'none'!r})",
            code="unsupported_media_type",
        )


async def parse_body(request: Request, model: type[Body], server: ServerConfig) -> Body:
    """The body as `model`: 415 when not declared JSON, 413 when far too large, 400 `invalid_json` or
    `invalid_value` when it does not parse."""
    check_json_content_type(request)
    raw = await request.body()
    # Refuse absurd bodies before parsing them: 4 bytes per allowed character (UTF-8's most) plus the envelope.
    if len(raw) > 4 * server.max_prompt_chars + ENVELOPE_BYTES:
        raise APIError(413, "request body too large", code="request_too_large")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"request body is not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        message, param = validation_message(e)
        raise bad_request(message, param=param, code="invalid_value") from e


def check_size(text: str, n_messages: int, server: ServerConfig) -> None:
    """400 when the prompt has more characters, or the request more messages, than this deployment accepts."""
    if len(text) > server.max_prompt_chars:
        raise bad_request(
            f"prompt has {len(text)} characters; this deployment accepts at most {server.max_prompt_chars}",
            param="messages",
            code="context_length_exceeded",
        )
    if n_messages > server.max_messages:
        raise bad_request(f"at most {server.max_messages} messages per request", param="messages")


def check_generation(body: ChatCompletionRequest, server: ServerConfig) -> None:
    """400 for what a chat request may not ask, stated up front: an OpenAI field the experts cannot honour
    (`unsupported_parameter`), more tokens than `server.max_tokens`, or more or longer `stop` strings than allowed."""
    refused = body.unsupported()
    if refused is not None:
        raise bad_request(refused[1], param=refused[0], code="unsupported_parameter")
    asked = body.max_completion_tokens or body.max_tokens
    if asked is not None and asked > server.max_tokens:
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise bad_request(f"{param}={asked}: this deployment generates at most {server.max_tokens} tokens", param=param)
    stops = body.stop_list() or []
    if len(stops) > server.max_stop_sequences:
        raise bad_request(f"at most {server.max_stop_sequences} stop strings, got {len(stops)}", param="stop")
    if any(len(s) > server.max_stop_chars for s in stops):
        raise bad_request(f"stop strings may have at most {server.max_stop_chars} characters", param="stop")


def generation_request(body: ChatCompletionRequest, request_id: str) -> GenerationRequest:
    """What every expert is asked, whatever its backend; unset sampling options fall to the expert's defaults."""
    return GenerationRequest(
        messages=body.plain_messages(),
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stop_list(),
        seed=body.seed,
        request_id=request_id,
    )
