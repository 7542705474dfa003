"""kaleyra_async: an asyncio, high-throughput bulk SMS dispatcher for the Kaleyra SMS API."""

from ._bulk import BulkOptions, send_bulk
from ._client import KaleyraClient
from ._config import (
    Config,
    DispatchConfig,
    HttpConfig,
    MessageDefaults,
    PodConfig,
    RedisConfig,
    RetryPolicy,
    Secret,
)
from ._config_file import load_config
from ._exceptions import (
    APIError,
    AuthenticationError,
    ConfigError,
    ConnectError,
    KaleyraError,
    RateLimitError,
    RedisUnavailableError,
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
from ._sources import RecordSource
from ._summary import BulkSummary
from ._version import __version__ as __version__

__all__ = [
    "APIError",
    "AuthenticationError",
    "BulkOptions",
    "BulkSummary",
    "Config",
    "ConfigError",
    "ConnectError",
    "DispatchConfig",
    "HttpConfig",
    "KaleyraClient",
    "KaleyraError",
    "Message",
    "MessageDefaults",
    "MessageStatus",
    "PodConfig",
    "RateLimitError",
    "Receipt",
    "RecordSource",
    "RedisConfig",
    "RedisUnavailableError",
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
    "send_bulk",
]
