"""kaleyra_async: an asyncio, high-throughput bulk SMS dispatcher for the Kaleyra SMS API."""

from ._config import (
    Config,
    DispatchConfig,
    HttpConfig,
    MessageDefaults,
    PodConfig,
    RetryPolicy,
    Secret,
    load_config,
)
from ._exceptions import (
    APIError,
    AuthenticationError,
    ConfigError,
    ConnectError,
    KaleyraError,
    RateLimitError,
    RejectedError,
    ResponseLostError,
    ServerError,
    TransportError,
    ValidationError,
)
from ._models import (
    Message,
    MessageStatus,
    Receipt,
    RowResult,
    SenderId,
    SenderIdResult,
    SendResult,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AuthenticationError",
    "Config",
    "ConfigError",
    "ConnectError",
    "DispatchConfig",
    "HttpConfig",
    "KaleyraError",
    "Message",
    "MessageDefaults",
    "MessageStatus",
    "PodConfig",
    "RateLimitError",
    "Receipt",
    "RejectedError",
    "ResponseLostError",
    "RetryPolicy",
    "RowResult",
    "Secret",
    "SendResult",
    "SenderId",
    "SenderIdResult",
    "ServerError",
    "TransportError",
    "ValidationError",
    "load_config",
]
