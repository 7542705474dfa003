"""Hostile input corpus: every case through the real CLI, against the sandbox over loopback.

Each case is one input (a file in tests/data/bad/, or bytes made here when it is large) and
states exactly what a user must get:

* exit code 0 (every row sent), 1 (some rows not sent) or 2 (a usage or config error before
  anything is sent: stderr names the problem, no request reached the sandbox, and no results
  file or journal is left to block the corrected rerun);
* which rows are sent and which are ``invalid``, with their ``error_code`` and words of the
  error, which must start by naming where the problem is (``line N:`` or the field);
* one result line per data row, and the audit of the results against the sandbox's ledger
  (nothing lost, nothing sent twice, every ``sent`` row accepted exactly once);
* no "Traceback" on stderr, whatever the input.

tests/data/bad/README.md lists the cases in words.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from kaleyra_async.sandbox import Sandbox
from tests.conftest import cli_env, run_cli

from .invariants import audit, ledger_from_records, read_results

pytestmark = pytest.mark.timeout(60)

DATA = Path(__file__).resolve().parent.parent / "data" / "bad"
BODY = "Your order has shipped"
TEMPLATE = "1107161234567890123"
#: Every error must say where the problem is before saying what it is.
NAMES_WHERE = re.compile(r"(line \d+|[a-z_]+(\.\w+)?): ")
NO_COUNTRY_CODE = "to: has no country code"
NOT_A_NUMBER = "to: is not a phone number"
TWO_NUMBERS = "to: holds more than one number"
TOO_LONG_FIELD = "malformed CSV: a field is longer than 131072 characters"
UNCLOSED_QUOTE = "malformed CSV: the file ends inside a quoted field"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    why: str
    #: A file in tests/data/bad/, or a function making the bytes (large inputs stay out of git).
    input: str | Callable[[], bytes]
    exit: int
    #: Rows (1-based data rows) that must be sent.
    sent: tuple[int, ...] = ()
    #: Rows that must be invalid: row -> (error_code, words the error contains).
    invalid: Mapping[int, tuple[str, str]] = dataclasses.field(default_factory=dict)
    #: For exit 2: what stderr must say.
    usage_error: str = ""
    args: tuple[str, ...] = ()
    #: A TOML file in tests/data/bad/ passed with --config.
    config: str | None = None

    @property
    def rows(self) -> int:
        return len(self.sent) + len(self.invalid)

    def __post_init__(self) -> None:
        assert (self.exit == 2) == bool(self.usage_error), self.id
        assert not set(self.sent) & set(self.invalid), self.id


def rows(*lines: bytes, header: bytes = b"to,name") -> Callable[[], bytes]:
    return lambda: b"\n".join([header, *lines]) + b"\n"


MB = 1 << 20
SPANS_2_3 = "line 2: malformed CSV: ',' expected after '\"' (the row spans lines 2-3)"


def unclosed_quote_in_a_big_file() -> bytes:
    """Row 2 opens a quote that never closes; 200 rows of 1 KB follow, past csv's 128 KiB limit."""
    later = [b"+9198%08d," % n + b"x" * 1000 for n in range(3, 203)]
    return rows(b"+919800000001,Asha", b'+919800000002,"Ravi', *later)()


CASES = [
    # -- encodings -------------------------------------------------------------------------
    Case("bom", "Excel's 'CSV UTF-8' starts with a BOM: it is not part of the first column name",
         "bom.csv", 0, sent=(1, 2)),
    Case("bom-crlf-capital-to", "BOM, CRLF and a 'TO' header together, as Windows exports them",
         "bom_crlf_capital_to.csv", 0, sent=(1, 2)),
    # Invalid UTF-8 is a per-row error, not a file-level one: one mis-encoded name must not stop
    # the other rows, and the row itself is not sent because its text cannot be known.
    Case("latin1-row", "a Latin-1 'é' in one row spoils that row only, naming line and column",
         "latin1_row.csv", 1, sent=(1, 3),
         invalid={2: ("invalid_row", "line 3: column name: bytes that are not valid UTF-8")}),
    Case("invalid-utf8-in-number", "a bad byte inside the number: the row, not the file",
         "invalid_utf8_number.csv", 1, sent=(2,),
         invalid={1: ("invalid_row", "line 2: column to: bytes that are not valid UTF-8")}),
    Case("latin1-header", "bad bytes in the header: the columns are unknown, stop before sending",
         "latin1_header.csv", 2, usage_error="header row contains bytes that are not valid UTF-8"),
    Case("utf16", "Excel's 'Unicode text' is UTF-16: refused with a hint to save as UTF-8",
         "utf16.csv", 2, usage_error="save the file as UTF-8"),
    # -- line endings, blank lines, quoting ------------------------------------------------
    Case("crlf-lf-mix", "CRLF and LF line endings mixed in one file", "crlf_lf_mix.csv", 0,
         sent=(1, 2, 3)),
    Case("cr-only", "old Mac exports end lines with a lone CR", "cr_only.csv", 0, sent=(1, 2)),
    Case("lf-header-cr-rows", "a header ending in LF on rows ending in a lone CR",
         "lf_header_cr_rows.csv", 0, sent=(1, 2, 3)),
    Case("cr-header-crlf-rows", "a header ending in a lone CR on rows ending in CRLF",
         "cr_header_crlf_rows.csv", 0, sent=(1, 2, 3)),
    Case("blank-lines", "blank and whitespace lines are skipped; ',' lines are empty data rows",
         "blank_lines.csv", 1, sent=(1, 2),
         invalid=dict.fromkeys((3, 4), ("invalid_to", "to: missing number"))),
    Case("quoted-newlines", "quoted fields may hold newlines (LF and CRLF), commas and quotes",
         "quoted_newlines.csv", 0, sent=(1, 2, 3)),
    Case("no-final-newline", "the last row counts without a trailing newline",
         "no_final_newline.csv", 0, sent=(1, 2)),
    Case("wrong-field-counts", "a row with too many or too few fields is invalid, named by line",
         "wrong_field_counts.csv", 1, sent=(1, 4),
         invalid={2: ("invalid_row", "line 3: row has 3 fields, the header has 2"),
                  3: ("invalid_row", "line 4: row has 1 field, the header has 2")}),
    Case("unterminated-quote-at-eof", "the file ends mid-row, inside a quoted field",
         "unterminated_quote_at_eof.csv", 1, sent=(1,),
         invalid={2: ("invalid_row", f"line 3: {UNCLOSED_QUOTE}")}),
    Case("unterminated-quote-mid-file",
         "a quote never closed must not swallow the rows after it: they are read again and sent",
         "unterminated_quote_mid_file.csv", 1, sent=(1, 3, 4),
         invalid={2: ("invalid_row", f"line 3: {UNCLOSED_QUOTE}")}),
    Case("stray-quote", "text after a closing quote is malformed; a quote inside a field is text",
         "stray_quote.csv", 1, sent=(1, 3),
         invalid={2: ("invalid_row", "line 3: malformed CSV: ',' expected after '\"'")}),
    # A quote that closed is followed by a space: its lines were text of one field, and a
    # number in that text must never be sent to as if it were a row.
    Case("closed-quote-then-space", "text after a closing quote spoils the row its quote spans",
         "closed_quote_then_space.csv", 1, sent=(2,), invalid={1: ("invalid_row", SPANS_2_3)}),
    Case("closed-quote-then-space-harmless", "the same with only words in the quote: no made-up "
         "row, no later row renumbered", "closed_quote_then_space_harmless.csv", 1, sent=(2,),
         invalid={1: ("invalid_row", SPANS_2_3)}),
    Case("unterminated-quote-big-file",
         "a quote never closed early in a big file: named as such, not as a too-long field",
         unclosed_quote_in_a_big_file, 1, sent=(1, *range(3, 203)),
         invalid={2: ("invalid_row", "line 3: malformed CSV: a quote is not closed within 131072 "
                                     "characters; lines 4-")}),
    Case("lone-cr-in-field", "a CR inside an unquoted field, in a file of LF lines",
         "lone_cr_in_field.csv", 1, sent=(2,),
         invalid={1: ("invalid_row", "line 2: malformed CSV: a line break inside an unquoted")}),
    Case("nul-bytes", "a NUL in a body is corrupt input, never sent to a phone",
         "nul_bytes.csv", 1, sent=(2,),
         invalid={1: ("invalid_body", "body: contains the control character U+0000")}),
    # -- the header and the file as a whole ----------------------------------------------
    Case("empty-file", "nothing at all", "empty.csv", 2, usage_error="input is empty"),
    Case("only-blank-lines", "blank lines only: no header", "only_blank_lines.csv", 2,
         usage_error="input is empty"),
    Case("header-only", "a header and no rows: nothing to do, nothing wrong", "header_only.csv", 0),
    Case("missing-header", "the first line is data: say the header row is missing",
         "missing_header.csv", 2, usage_error="is the header row missing?"),
    Case("duplicate-header", "two columns of one name: which one is meant is unknown",
         "duplicate_header.csv", 2, usage_error="header row repeats column(s): name"),
    Case("missing-to-column", "no number column: stop before sending and say how to pick one",
         "missing_to_column.csv", 2, usage_error="input has no 'to' column (columns: phone, name)"),
    Case("empty-column-name", "a header cell with no name, named by position",
         "empty_column_name.csv", 2, usage_error="empty column name (column 2)"),
    Case("semicolons", "a semicolon export read as commas: hint at --delimiter",
         "semicolons.csv", 2, usage_error="--delimiter"),
    # -- sizes (made here: megabytes stay out of git) -------------------------------------
    Case("field-1mb", "a 1 MB field: that row only, the rows around it still go out",
         rows(b"+919800000001,Asha", b"+919800000002," + b"x" * MB, b"+919800000003,Meera"),
         1, sent=(1, 3), invalid={2: ("invalid_row", f"line 3: {TOO_LONG_FIELD}")}),
    Case("quoted-field-1mb", "a quoted 1 MB field", rows(
         b"+919800000001,Asha", b'+919800000002,"' + b"x" * MB + b'"', b"+919800000003,Meera"),
         1, sent=(1, 3), invalid={2: ("invalid_row", f"line 3: {TOO_LONG_FIELD}")}),
    Case("number-100kb", "a 100,000-digit number is refused before any parsing work",
         rows(b"1" * 100_000 + b",Asha", b"+919800000002,Ravi"), 1, sent=(2,),
         invalid={1: ("invalid_to", "to: is longer than 64 characters")}),
    Case("body-4001", "4001 characters is one too many (Kaleyra's E401); 4000 goes out",
         rows(b"+919800000001," + b"a" * 4001, b"+919800000002," + b"a" * 4000,
              header=b"to,body"),
         1, sent=(2,), invalid={1: ("invalid_body", "body: has 4001 characters")}),
    Case("body-100kb", "a 100 KB body", rows(b"+919800000001," + b"b" * 100_000,
                                            b"+919800000002,ok", header=b"to,body"),
         1, sent=(2,), invalid={1: ("invalid_body", "body: has 100000 characters")}),
    Case("emoji-body-4001", "characters, not UTF-16 units or bytes, are counted: 4000 emoji go",
         rows(b"+919800000001," + "😀".encode() * 4001, b"+919800000002," + "😀".encode() * 4000,
              header=b"to,body"),
         1, sent=(2,), invalid={1: ("invalid_body", "body: has 4001 characters")}),
    Case("default-body-4001", "a --body over the limit would spoil every row: a usage error",
         "bom.csv", 2, usage_error="default body: has 4001 characters",
         args=("--body", "a" * 4001)),
    # -- numbers ---------------------------------------------------------------------------
    Case("numbers-formatting", "spaces, dashes, dots, parentheses, 00, no-break spaces: all fine",
         "numbers_formatting.csv", 0, sent=(1, 2, 3, 4, 5, 6)),
    Case("numbers-with-letters", "letters, Excel's 9.198E+11, tel:, full-width digits, ext",
         "numbers_not_numbers.csv", 1, sent=(1,),
         invalid=dict.fromkeys(range(2, 8), ("invalid_to", NOT_A_NUMBER))),
    Case("numbers-bad-digits", "too short, too long, a leading zero after +, unknown code",
         "numbers_bad_digits.csv", 1, sent=(1,),
         invalid={2: ("invalid_to", "to: is not a valid number for +91 (IN)"),
                  3: ("invalid_to", "to: has too few digits"),
                  4: ("invalid_to", "to: does not start with a known country code"),
                  5: ("invalid_to", "to: does not start with a known country code"),
                  6: ("invalid_to", "to: has more than 15 digits")}),
    Case("national-numbers-without-prefix", "no country code and no default prefix: never guessed",
         "numbers_national.csv", 1, sent=(1,),
         invalid=dict.fromkeys(range(2, 6), ("invalid_to", NO_COUNTRY_CODE))),
    Case("national-numbers-with-prefix", "--country-prefix +91: leading zeros, 91... all read",
         "numbers_national.csv", 0, sent=(1, 2, 3, 4, 5), args=("--country-prefix", "+91")),
    Case("national-numbers-prefix-from-config", "the same prefix from the config file",
         "numbers_national.csv", 0, sent=(1, 2, 3, 4, 5), config="config_country_prefix.toml"),
    Case("otp-two-numbers", "an OTP goes to one number: a cell with two is refused, by name",
         "otp_two_numbers.csv", 1, sent=(2, 4),
         invalid={1: ("invalid_to", TWO_NUMBERS), 3: ("invalid_to", TWO_NUMBERS)}),
    # -- message fields --------------------------------------------------------------------
    Case("emoji-bodies", "emoji, Devanagari and a ZWJ family go out as Unicode", "body_emoji.csv",
         0, sent=(1, 2, 3)),
    Case("template-data-over-30", "template_data values are at most 30 characters (emoji: 2 ok)",
         "template_data_long.csv", 1, sent=(1, 2, 4), args=("--template-data", "v1"),
         invalid={3: ("invalid_template_data", "template_data.v1: has 31 characters")}),
    Case("bad-time", "not ISO, in the past, no offset, too far ahead, impossible date",
         "bad_time.csv", 1, sent=(1,),
         invalid={2: ("invalid_time", "time: 'tomorrow' is not an ISO-8601"),
                  3: ("invalid_time", "is less than 15 minutes after now"),
                  4: ("invalid_time", "has no UTC offset"),
                  5: ("invalid_time", "is more than 3 months after now"),
                  6: ("invalid_time", "'2031-13-45T99:00:00+05:30' is not an ISO-8601")}),
    Case("bad-overrides", "per-row type, flash, unicode, sender, template id, body placeholder",
         "bad_overrides.csv", 1, sent=(7,),
         invalid={1: ("invalid_type", "type: 'PROMO' is not a message type of the IN pod"),
                  2: ("invalid_flash", "flash: 'maybe' is not one of"),
                  3: ("invalid_unicode", "unicode: '7' is not one of"),
                  4: ("invalid_sender", "sender: 'TOOLONGSENDERID' is not a sender: 1-11 letters"),
                  5: ("invalid_template_id", "template_id: '123' is not 12 to 30 digits"),
                  6: ("invalid_body", "body: placeholder {nope} has no column")}),
    # -- config files ----------------------------------------------------------------------
    Case("config-wrong-type", "a string where a number belongs", "bom.csv", 2,
         config="config_wrong_type.toml", usage_error="dispatch.batch_size: must be an integer"),
    Case("config-unknown-key", "a typo never goes unnoticed", "bom.csv", 2,
         config="config_unknown_key.toml", usage_error="dispatch.batchsize: unknown key"),
    Case("config-unknown-section", "a misspelt section", "bom.csv", 2,
         config="config_unknown_section.toml", usage_error="unknown config section(s): dispatchh"),
    Case("config-account-wrong-type", "a wrong type is wrong even when the environment wins",
         "bom.csv", 2, config="config_account_wrong_type.toml",
         usage_error="account.sid: must be a string"),
    Case("config-not-toml", "a syntax error names the file and the position", "bom.csv", 2,
         config="config_not_toml.toml", usage_error="config_not_toml.toml: not valid TOML"),
    Case("config-out-of-range", "a value outside its range", "bom.csv", 2,
         config="config_out_of_range.toml", usage_error="dispatch.concurrency: must be >= 1"),
    Case("config-bad-country-prefix", "a prefix without '+'", "bom.csv", 2,
         config="config_bad_country_prefix.toml",
         usage_error="country_prefix: '91' is not '+' followed by 1-3 digits"),
    Case("config-pod-not-a-table", "a value where a table belongs", "bom.csv", 2,
         config="config_pod_not_a_table.toml", usage_error="pods.IN: must be a table"),
]  # fmt: skip


def input_path(case: Case, tmp_path: Path) -> Path:
    if isinstance(case.input, str):
        return DATA / case.input
    path = tmp_path / f"{case.id}.csv"
    path.write_bytes(case.input())
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("results.ndjson*"))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
async def test_hostile_input(case: Case, sandbox: Sandbox, tmp_path: Path) -> None:
    """The case's rows are sent or invalid as stated; the good rows go out; no traceback."""
    out = tmp_path / "results.ndjson"
    command = [
        "send-bulk", str(input_path(case, tmp_path)),
        "--out", str(out), "--base-url", sandbox.base_url, "--no-progress",
        "--sender", "KLRHXA", "--type", "TXN", "--body", BODY, "--template-id", TEMPLATE,
        *case.args,
    ]  # fmt: skip
    if case.config:
        command += ["--config", str(DATA / case.config)]
    done = await run_cli(*command, env=cli_env(sandbox))
    stderr = done.stderr.decode(errors="replace")

    assert "Traceback" not in stderr
    assert done.returncode == case.exit, stderr
    if case.exit == 2:
        assert case.usage_error in stderr
        assert sandbox.stats.requests_total == 0
        # Nothing was sent, so nothing may block the corrected rerun ("already exists").
        assert leftovers(tmp_path) == []
        return

    results = read_results(out)
    report = audit(case.rows, results, ledger_from_records(sandbox.ledger_records()))
    report.assert_sound()
    assert len(results) == case.rows  # one line per data row, and no row the case doesn't know
    by_status: dict[str, list[int]] = {}
    for record in results:
        by_status.setdefault(record["status"], []).append(record["row"])
    assert sorted(by_status.get("sent", [])) == list(case.sent)
    assert sorted(by_status.get("invalid", [])) == sorted(case.invalid)
    assert set(by_status) <= {"sent", "invalid"}
    invalid = {r["row"]: r for r in results if r["status"] == "invalid"}
    for row, (code, words) in case.invalid.items():
        assert invalid[row]["error_code"] == code
        assert words in invalid[row]["error"]
        assert NAMES_WHERE.match(invalid[row]["error"]), invalid[row]["error"]
    assert len(sandbox.ledger_records()) == len(case.sent)


def test_the_corpus_is_complete_and_documented() -> None:
    """Every file in tests/data/bad/ is a case's input or config, and the README lists each case."""
    used = {c.input for c in CASES if isinstance(c.input, str)} | {c.config for c in CASES}
    files = {p.name for p in DATA.iterdir() if p.name != "README.md"}
    assert files == used - {None}
    readme = (DATA / "README.md").read_text()
    assert [c.id for c in CASES if f"`{c.id}`" not in readme] == []
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
