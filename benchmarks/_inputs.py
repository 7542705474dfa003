"""Deterministic benchmark inputs, generated once into ``benchmarks/.data/`` and reused.

Every file is a CSV with a header row whose numbers are unique, valid Indian mobile numbers in
E.164 (``+91`` and ten digits starting 6-9). Number ``i`` is ``6000000000 + (A*i + B) mod 4e9``
with ``A`` odd and not a multiple of 5, so it is a permutation of the 4e9-number range: the
first N numbers are unique for any N, look random, and are the same on every machine. Each is
checked with ``phonenumbers.is_valid_number`` once, here, and a number that fails is skipped
(none does with phonenumbers 9.0; the check guards against metadata changes).

Three shapes:

* ``bulk``: only a ``to`` column; the message (type TXN, body, sender, template) comes from the
  command line, so every row has the same message and rows go 100 to a request.
* ``otp``: ``to,type,body`` with ``type = OTP`` and a six-digit code in each body: one request
  per row (Kaleyra allows one recipient per OTP request).
* ``txn1``: ``to,body`` with an order number in each body: personalised transactional messages,
  so no two rows share a request either, without the OTP rules.

A file is written to ``<name>.tmp`` and renamed, so an interrupted generation never leaves a
short file behind to be reused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Literal

import phonenumbers

__all__ = ["DATA_DIR", "Kind", "ensure_input", "numbers"]

DATA_DIR: Final = Path(__file__).resolve().parent / ".data"

Kind = Literal["bulk", "otp", "txn1"]

_SPAN: Final = 4_000_000_000
_FIRST: Final = 6_000_000_000
_A: Final = 2_654_435_761  # odd, not a multiple of 5: coprime with 4e9
_B: Final = 123_456_789
_HEADERS: Final[dict[str, bytes]] = {
    "bulk": b"to\n",
    "otp": b"to,type,body\n",
    "txn1": b"to,body\n",
}
_CHUNK_ROWS: Final = 50_000


def numbers(count: int) -> Iterator[str]:
    """The first ``count`` benchmark numbers, E.164, unique and valid."""
    made = 0
    i = 0
    valid = phonenumbers.is_valid_number
    while made < count:
        national = _FIRST + (_A * i + _B) % _SPAN
        i += 1
        if valid(phonenumbers.PhoneNumber(country_code=91, national_number=national)):
            made += 1
            yield f"+91{national}"


def _line(kind: Kind, row: int, number: str) -> str:
    if kind == "bulk":
        return f"{number}\n"
    if kind == "otp":
        code = (row * 7_919 + 104_729) % 900_000 + 100_000
        return f"{number},OTP,{code} is your login OTP. Do not share it with anyone.\n"
    return f"{number},Your order KX{row:08d} has shipped and arrives in 2 days.\n"


def ensure_input(kind: Kind, rows: int, data_dir: Path = DATA_DIR) -> Path:
    """The path of the ``kind`` input with ``rows`` data rows, generating it if missing."""
    path = data_dir / f"{kind}_{rows}.csv"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(_HEADERS[kind])
        chunk: list[str] = []
        for row, number in enumerate(numbers(rows), 1):
            chunk.append(_line(kind, row, number))
            if len(chunk) >= _CHUNK_ROWS:
                fh.write("".join(chunk).encode())
                chunk.clear()
        fh.write("".join(chunk).encode())
    os.replace(tmp, path)
    return path
