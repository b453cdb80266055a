"""OpenAI-style error bodies: {"error": {"message", "type", "param", "code"}} with the matching status."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class APIError(Exception):
    """Raised anywhere in request handling; the ingress turns it into an OpenAI error response."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        """The OpenAI-style error body with this error's status."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


def short_error(e: BaseException) -> str:
    """One line for a failure; a remote error is reported by its cause, not Ray's wrapper and traceback."""
    e = getattr(e, "cause", None) or e
    text = f"{type(e).__name__}: {e}"
    return text if len(text) < 500 else text[:500] + "..."


def bad_request(message: str, param=None, code=None) -> APIError:
    """400: the request is malformed or asks for something this deployment does not offer."""
    return APIError(400, message, "invalid_request_error", param, code)


def not_found(message: str, param=None, code=None) -> APIError:
    """404: the named model, request or strategy does not exist here."""
    return APIError(404, message, "invalid_request_error", param, code)


def upstream_error(message: str, code: str = "expert_unavailable") -> APIError:
    """503: no expert could answer."""
    return APIError(503, message, "server_error", None, code)


def cause_message(e: BaseException) -> str:
    """The message of the error a remote call raised, without the traceback Ray wraps it in."""
    cause = getattr(e, "cause", None) or e
    return str(cause.args[0]) if cause.args else type(cause).__name__
