"""The HTTP side of the domain errors: each error type's status, and the one JSON error shape."""

from __future__ import annotations

from . import errors

STATUS: dict[type[errors.ServiceError], int] = {
    errors.InvalidInput: 422,
    errors.InputTooLong: 413,
    errors.PayloadTooLarge: 413,
    errors.UnknownModel: 404,
    errors.UnknownHead: 404,
    errors.UnknownRoute: 404,
    errors.Unauthorized: 401,
    errors.Overloaded: 429,
    errors.NotReady: 503,
    errors.RequestTimeout: 408,
    errors.InferenceFailed: 503,
    errors.ClientGone: 499,  # nginx's "client closed request": nobody reads it, the access log does
}


def status_of(exc: errors.ServiceError) -> int:
    """The status of the most specific mapped class (400 for a ServiceError nobody mapped)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_body(type_: str, message: str) -> dict:
    """The one error shape of every route."""
    return {"error": {"type": type_, "message": message}}
