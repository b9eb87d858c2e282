"""JSON errors of the REST API: `{"error": "...", ...}` with the status the reference uses."""

from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    """An answer other than success; raised anywhere in a handler, turned into JSON by the route wrapper."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> web.Response:
        response = error_response(self.status, self.message, **self.extra)
        response.headers.update(self.headers)
        return response


def error_response(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def bad_request(message: str, **extra: object) -> ApiError:
    return ApiError(400, message, **extra)


def invalid_fields(problems: dict[str, str], where: str = "body") -> ApiError:
    """400 naming every field that is wrong and why."""
    summary = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
    return ApiError(400, f"invalid {where}: {summary}", fields=problems)


def unauthorized(message: str, challenge: str) -> ApiError:
    """401 with the `WWW-Authenticate` challenge that says what to send (RFC 9110 requires one)."""
    return ApiError(401, message, headers={"WWW-Authenticate": challenge})


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"body is larger than {limit} bytes", limit=limit)
