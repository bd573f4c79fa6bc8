"""Domain errors: what went wrong, in a type name clients can branch on. They carry no HTTP status;
the HTTP layer (service/http_errors.py) maps each to one and renders the one JSON shape."""

from __future__ import annotations


class ServiceError(Exception):
    type = "invalid_request_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(ServiceError):
    type = "invalid_input"


class InputTooLong(ServiceError):
    type = "input_too_long"


class PayloadTooLarge(ServiceError):
    type = "payload_too_large"


class UnknownModel(ServiceError):
    type = "model_not_found"


class UnknownRoute(ServiceError):
    """A route that exists only when a setting enables it."""

    type = "not_found"


class UnknownHead(ServiceError):
    type = "head_not_found"


class Unauthorized(ServiceError):
    type = "authentication_error"


class Overloaded(ServiceError):
    type = "overloaded"


class NotReady(ServiceError):
    type = "not_ready"


class RequestTimeout(ServiceError):
    type = "request_timeout"


class InferenceFailed(ServiceError):
    """onnxruntime raised for one batch: its requests fail, later batches run as usual."""

    type = "inference_failed"


class ClientGone(ServiceError):
    """The client disconnected before its request reached a batch: it is dropped, not computed."""

    type = "client_closed_request"
