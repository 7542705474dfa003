"""The public face: exactly the names in __all__, sorted, all importable, nothing private."""

from __future__ import annotations

import kaleyra_async
import kaleyra_async.sandbox

EXPECTED = [
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


def test_all_is_exactly_the_public_api() -> None:
    """__all__ lists the public names, sorted (case-sensitively, as ruff sorts it)."""
    assert kaleyra_async.__all__ == EXPECTED
    assert sorted(kaleyra_async.__all__) == kaleyra_async.__all__


def test_every_exported_name_exists_and_is_documented() -> None:
    """Each export resolves and carries a docstring."""
    for name in kaleyra_async.__all__:
        obj = getattr(kaleyra_async, name)
        assert obj.__doc__, name


SANDBOX_EXPECTED = [
    "DEFAULT_API_KEY",
    "DEFAULT_SID",
    "FailRule",
    "FaultSpec",
    "LedgerRecord",
    "Sandbox",
    "SandboxCallbacks",
    "SandboxConfig",
    "SandboxProcess",
    "SandboxStats",
    "parse_faults",
]


def test_sandbox_all_is_exactly_what_a_user_needs() -> None:
    """kaleyra_async.sandbox exports its curated names, sorted; the handler's parts stay private."""
    assert kaleyra_async.sandbox.__all__ == SANDBOX_EXPECTED
    assert sorted(kaleyra_async.sandbox.__all__) == kaleyra_async.sandbox.__all__


def test_every_sandbox_export_exists_and_is_documented() -> None:
    """Each sandbox export resolves; its classes and functions carry a docstring."""
    for name in kaleyra_async.sandbox.__all__:
        obj = getattr(kaleyra_async.sandbox, name)
        assert isinstance(obj, str) or obj.__doc__, name
