"""Kaleyra's limits and defaults, each stated once (pure).

Every value here comes from Kaleyra's pages, except those marked **(ours)**: a safe reading
where the pages are silent. The client, the pipeline and the validators import them; the sandbox
does not, on purpose: it states Kaleyra's rules again from the pages, so that it can disagree
with the client.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from datetime import timedelta
from typing import Final

__all__ = [
    "ALPHANUMERIC_SENDER",
    "DEFAULT_JSON_BATCH_SIZE",
    "DEFAULT_POD_HOSTS",
    "DLT_HEADER",
    "DLT_SENDER_ID",
    "ENTITY_ID",
    "INDIA_PREFIX",
    "MAX_BODY_CHARS",
    "MAX_JSON_NODES",
    "MAX_RECIPIENTS",
    "MAX_REF_CHARS",
    "MAX_REF_CUSTOM_CHARS",
    "MAX_REF_CUSTOM_VALUES",
    "MAX_SENDER_IDS_PER_CREATE",
    "MAX_SENDER_IDS_PER_DELETE",
    "MAX_STATUS_IDS",
    "MAX_TEMPLATE_VALUE_CHARS",
    "MIN_SCHEDULE_LEAD",
    "NUMERIC_SENDER",
    "PODS",
    "REF_FIELDS",
    "SCHEDULE_HORIZON_MONTHS",
    "TEMPLATE_ID",
    "TYPES_BY_POD",
    "default_type",
    "resolve_host",
]

PODS: Final = ("IN", "SG", "EU", "NA")

#: Where each pod lives. The SG host differs between copies of the pages (older ones say
#: api.ap.kaleyra.io); we take the newer copy, and every host is configurable.
DEFAULT_POD_HOSTS: Final[Mapping[str, str]] = types.MappingProxyType(
    {
        "IN": "https://api.in.kaleyra.io",
        "SG": "https://api.kaleyra.io",
        "EU": "https://api.eu.kaleyra.io",
        "NA": "https://api.na.kaleyra.ai",
    }
)

#: Message types each pod accepts: India's DLT rules add transactional and promotional types.
TYPES_BY_POD: Final[Mapping[str, tuple[str, ...]]] = types.MappingProxyType(
    {
        "IN": ("OTP", "TXN", "TXND", "MKT"),
        "SG": ("OTP", "DEFAULT"),
        "EU": ("OTP", "DEFAULT"),
        "NA": ("OTP", "DEFAULT"),
    }
)

#: Recipients per send request (``/sms`` and ``/messages``); an OTP request takes exactly one.
MAX_RECIPIENTS: Final = 100
#: Nodes (recipients) per ``/sms/json`` request: a release note says 1000 **(ours: its pages
#: do not confirm it)**.
MAX_JSON_NODES: Final = 1000
#: Nodes per ``/sms/json`` request the pipeline makes unless told otherwise **(ours)**.
DEFAULT_JSON_BATCH_SIZE: Final = 100
#: Longest body in characters; Kaleyra answers E401 beyond it.
MAX_BODY_CHARS: Final = 4000
MAX_TEMPLATE_VALUE_CHARS: Final = 30
MAX_REF_CUSTOM_VALUES: Final = 5
MAX_REF_CUSTOM_CHARS: Final = 50
#: ``ref``, ``ref1`` and ``ref2``: each up to 255 characters, "returned in the callback".
REF_FIELDS: Final = ("ref", "ref1", "ref2")
MAX_REF_CHARS: Final = 255
MAX_SENDER_IDS_PER_CREATE: Final = 5000
MAX_SENDER_IDS_PER_DELETE: Final = 100
#: Message ids per status call **(ours)**: undocumented; 100 ids keep the URL under 8 KB.
MAX_STATUS_IDS: Final = 100
#: A scheduled message must be at least this far after the request...
MIN_SCHEDULE_LEAD: Final = timedelta(minutes=15)
#: ...and at most this many calendar months after it.
SCHEDULE_HORIZON_MONTHS: Final = 3

#: A DLT template id: 12 to 30 digits.
TEMPLATE_ID: Final = re.compile(r"[0-9]{12,30}")
#: A DLT principal entity id **(ours: the template id's shape)**.
ENTITY_ID: Final = TEMPLATE_ID
#: India's DLT sender header: "a string of 6 alphabetic characters" (the checklist).
DLT_HEADER: Final = re.compile(r"[A-Za-z]{6}")
#: A sender ID registered for India: "it can only be 6 character" (MSG134's text; the page's
#: own samples create ABCF01).
DLT_SENDER_ID: Final = re.compile(r"[A-Za-z0-9]{6}")
#: A numeric sender: a two-way or long-code number, "+17XXXXXXXX4" in the pages' sample.
NUMERIC_SENDER: Final = re.compile(r"\+?[0-9]{1,15}")
#: An alphanumeric sender ID (abroad, including from an IN account).
ALPHANUMERIC_SENDER: Final = re.compile(r"[A-Za-z0-9]{1,11}")
#: India's country calling code: DLT rules apply to messages to these numbers on the IN pod.
INDIA_PREFIX: Final = "+91"


def default_type(pod: str) -> str:
    """The message type used when none is given: TXN on the IN pod, DEFAULT elsewhere."""
    return "TXN" if pod.upper() == "IN" else "DEFAULT"


def resolve_host(pod: str, *, base_url: str | None = None, pod_host: str | None = None) -> str:
    """Scheme and host requests go to: ``base_url``, else the pod's configured host, else the
    pod's default host; without a trailing slash."""
    return (base_url or pod_host or DEFAULT_POD_HOSTS[pod.upper()]).rstrip("/")


#: A queued-campaign worker's batches in hand at once. More than send-bulk's requests in flight:
#: each batch also waits for Redis (its turn, its mark, its report), and only its turn paces it.
WORKER_CONCURRENCY: Final = 128
