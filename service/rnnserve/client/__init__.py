"""A Python client of rnnserve's /v1 API, blocking (`Client`) and asyncio (`AsyncClient`), on httpx and websockets.

Numpy in and out, binary tensors on the wire by default, sessions that send and keep `seq` (so a step retried
after a lost reply is applied once), retries with backoff on connection errors and 503 (`Retry-After`
honoured), the WebSocket stream as an iterator, the API key, and one exception class per problem type
(`rnnserve.client.errors`). README, "Python client"; the wire format is docs/API.md.
"""

from rnnserve.client.aio import AsyncClient, AsyncSession, AsyncStream
from rnnserve.client.errors import (
    ApiError,
    BadModelFile,
    ClientError,
    Conflict,
    ConnectionFailed,
    InvalidInput,
    MethodNotAllowed,
    ModelNotFound,
    ModelNotReady,
    NotFound,
    PayloadTooLarge,
    SeqConflict,
    ServerError,
    ServiceUnavailable,
    SessionNotFound,
    SessionsNotSupported,
    StoreUnavailable,
    StreamClosed,
    TooManySessions,
    Unauthorized,
    UnsupportedLayer,
)
from rnnserve.client.sync import Client, Session, Stream
from rnnserve.client.wire import ModelInfo, Result, Retry, SessionInfo, TensorSpec

__all__ = [
    "ApiError",
    "AsyncClient",
    "AsyncSession",
    "AsyncStream",
    "BadModelFile",
    "Client",
    "ClientError",
    "Conflict",
    "ConnectionFailed",
    "InvalidInput",
    "MethodNotAllowed",
    "ModelInfo",
    "ModelNotFound",
    "ModelNotReady",
    "NotFound",
    "PayloadTooLarge",
    "Result",
    "Retry",
    "SeqConflict",
    "ServerError",
    "ServiceUnavailable",
    "Session",
    "SessionInfo",
    "SessionNotFound",
    "SessionsNotSupported",
    "StoreUnavailable",
    "Stream",
    "StreamClosed",
    "TensorSpec",
    "TooManySessions",
    "Unauthorized",
    "UnsupportedLayer",
]
