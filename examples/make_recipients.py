"""Regenerate examples/recipients.csv: ``python examples/make_recipients.py``.

Deterministic (seeded), so the committed file and this script always agree. The file is a
realistic small campaign: mostly one shipping notice (batched 100 per request), a few
personalised and Unicode bodies, one OTP, a repeated number, and rows that are wrong in the
ways real exports are wrong.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import phonenumbers

ROWS = 3000
OUT = Path(__file__).with_name("recipients.csv")


def main() -> None:
    rng = random.Random(20261123)
    names = ["Asha", "Ravi", "Meera", "Arjun", "Priya", "Kabir", "Zoya", "Vikram", "Ishaan"]
    rows: list[list[str]] = []
    for n in range(ROWS):
        number = _valid_indian_mobile(rng)
        name = rng.choice(names)
        order = f"ORD-{100000 + n}"
        rows.append([number, name, order, "", ""])
    # Personalised bodies: {name} and {order} are filled from the row's columns.
    for i in range(10, 60):
        rows[i][4] = "Hi {name}, order {order} is out for delivery"
    # Unicode (Hindi) bodies force UCS-2 and are counted in 70/67-character segments.
    for i in range(60, 70):
        rows[i][4] = "नमस्ते {name}, आपका ऑर्डर {order} भेज दिया गया है"
    # One OTP: always a request of its own.
    rows[70] = ["+919876543210", "Asha", "", "OTP", "482913 is your login OTP. Do not share it."]
    # National numbers without +91 use the configured country prefix.
    for i in range(80, 85):
        rows[i][0] = rows[i][0].removeprefix("+91")
    # A repeated number with the same message (skipped with --dedupe).
    rows[90][0] = rows[91][0]
    # Wrong rows: each becomes an "invalid" result, and the run goes on.
    rows[100][0] = "12345"  # too short
    rows[101][0] = ""  # missing number
    rows[102][0] = "+91 98AB 543210"  # letters
    rows[103][0] = "+44 7911 12345"  # a UK mobile one digit short
    rows[104][3] = "PROMO"  # not a message type of the IN pod
    rows[105][4] = "x" * 4001  # over Kaleyra's 4000-character body limit
    with OUT.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["to", "name", "order", "type", "body"])
        writer.writerows(rows)
        fh.write("+919812345678,Short row\n")  # wrong number of fields


def _valid_indian_mobile(rng: random.Random) -> str:
    while True:
        number = f"+91{rng.choice('6789')}{rng.randrange(10**8, 10**9):09d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


if __name__ == "__main__":
    main()
