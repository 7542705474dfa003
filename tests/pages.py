"""Kaleyra's page samples (``tests/data/kaleyra_pages/samples.json``, verbatim) and the reader
of their curl command lines, shared by the sandbox's and the client's golden tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import orjson

from kaleyra_async.sandbox import DEFAULT_API_KEY, DEFAULT_SID

SAMPLES: Final = {
    s["id"]: s
    for s in orjson.loads(
        (Path(__file__).parent / "data" / "kaleyra_pages" / "samples.json").read_bytes()
    )["samples"]
}

_LINE_GLUE: Final = re.compile(r"\\[ \t]*\n")
_URL: Final = re.compile(r"""['"](https://[^'"]+)['"]""")
_HEADER: Final = re.compile(r"""(?:-H|--header)\s+(['"])(.*?)\1""")
_FIELD: Final = re.compile(r"""(-d|--data-urlencode|--date-urlencode)\s+(['"])(.*?)\2""")
_JSON_DATA: Final = re.compile(r"""(?:--data|--data-raw)\s+'""")
_PLACEHOLDER: Final = re.compile(r"(?<=[0-9])[Xx]+|[Xx]+(?=[0-9])")


def fill(text: str) -> str:
    """Placeholders next to digits become 5s."""
    return _PLACEHOLDER.sub(lambda m: "5" * len(m.group()), text)


def curl_request(raw: str) -> tuple[str, dict[str, str], bytes]:
    """(path after the host, headers, body) of a page's curl sample, with the sandbox's SID
    and api-key."""
    text = _LINE_GLUE.sub(" ", raw)
    url = _URL.search(text)
    assert url is not None
    path = re.sub(r"^https://[^/]+", "", url.group(1))
    path = re.sub(r"^/v1/[^/]+", f"/v1/{DEFAULT_SID}", path)
    headers = {}
    for _, header in _HEADER.findall(text):
        name, _, value = header.partition(":")
        headers[name.strip().lower()] = value.strip()
    headers["api-key"] = DEFAULT_API_KEY
    json_data = _JSON_DATA.search(raw)
    if json_data is not None:
        # JSON bodies are the last option of their samples; one page never closes its quote.
        body = re.sub(r"'\s*$", "", raw[json_data.end() :])
        return path, headers, fill(body).encode()
    parts = []
    for option, _, value in _FIELD.findall(text):
        if option == "--date-urlencode":
            continue  # not a curl option: curl stops on it
        value = fill(value)
        if option == "--data-urlencode":
            name, _, content = value.partition("=")
            value = f"{name}={quote(content, safe='')}"
        parts.append(value)
    return path, headers, "&".join(parts).encode()


def sample_json(sample_id: str) -> Any:
    return orjson.loads(SAMPLES[sample_id]["raw"])
