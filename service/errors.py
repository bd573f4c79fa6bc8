"""Domain errors, each with its HTTP status; one handler renders them all in the one JSON shape."""
from __future__ import annotations


def error_body(type_: str, message: str) -> dict:
    """The one error shape of every route."""
    return {"error": {"type": type_, "message": message}}


class ServiceError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(ServiceError):
    status = 422
    type = "invalid_input"


class InputTooLong(ServiceError):
    status = 413
    type = "input_too_long"


class PayloadTooLarge(ServiceError):
    status = 413
    type = "payload_too_large"


class UnknownModel(ServiceError):
    status = 404
    type = "model_not_found"


class UnknownHead(ServiceError):
    status = 404
    type = "head_not_found"


class Unauthorized(ServiceError):
    status = 401
    type = "authentication_error"


class Overloaded(ServiceError):
    status = 429
    type = "overloaded"


class NotReady(ServiceError):
    status = 503
    type = "not_ready"


class RequestTimeout(ServiceError):
    status = 408
    type = "request_timeout"


class InferenceFailed(ServiceError):
    """onnxruntime raised for one batch: its requests get a 503, later batches run as usual."""
    status = 503
    type = "inference_failed"
