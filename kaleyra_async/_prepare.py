"""Turning an input row into a validated, normalised message, or into an ``invalid`` result (pure).

Per-row work is the hot path of a million-row run, so everything that repeats is cached: the
number normaliser caches numbers, and a row's validated message and its segment count are cached
together by the columns they depend on (a bulk campaign has one for every row).
"""

from __future__ import annotations

import dataclasses
import logging
import operator
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final, TypeVar

from ._batching import PreparedRow
from ._cells import fill_placeholders, has_placeholders, placeholders, ref_custom_cell
from ._config import MessageDefaults
from ._encoding import SegmentInfo, analyse
from ._exceptions import ConfigError, ValidationError
from ._india import check_dlt, dlt_applies, dlt_fields
from ._limits import REF_FIELDS, default_type
from ._models import InputRow, Message, RowResult
from ._phone import PhoneNormalizer
from ._schedule import validate_time
from ._validate import (
    check_own_body,
    validate_body,
    validate_entity_id,
    validate_flash,
    validate_message,
    validate_message_body,
    validate_sender,
    validate_template_id,
    validate_type,
    validate_unicode,
)

__all__ = ["MESSAGE_COLUMNS", "RowPlan", "RowPreparer"]

logger = logging.getLogger(__name__)

#: Columns that, when present and non-empty in a row, override the message field of that name.
MESSAGE_COLUMNS: Final = (
    "body",
    "sender",
    "type",
    "template_id",
    "flash",
    "unicode",
    "time",
    "callback_profile_id",
    "ref_custom",
    *REF_FIELDS,
    "entity_id",
)

# A header cell that is a phone number means the file has no header row.
_LOOKS_LIKE_NUMBER: Final = re.compile(r"\+?[0-9][0-9 ().-]{5,}")
_MAX_CACHED_MESSAGES: Final = 4096
#: ``unicode`` settings under which ``analyse`` finds the encoding from the text.
_DETECTED: Final = (None, "AUTO")
_NO_JSON_FOR_ENTITY_ID: Final = (
    "entity_id goes only in /sms/json requests (Kaleyra's /sms has no place for it), and "
    'this run sends none (personalised = "single")'
)
#: What the fields but the body are validated with: a body every rule accepts.
_BODY_STAND_IN: Final = "x"
K = TypeVar("K")
#: A message, the row's own body over it (see ``PreparedRow.body``) and the segment count, or
#: the rule it breaks.
_Entry = tuple[Message, str | None, SegmentInfo] | ValidationError


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RowPlan:
    """How rows become messages: the configured defaults, the pod, and the run's choices."""

    pod: str
    defaults: MessageDefaults = dataclasses.field(default_factory=MessageDefaults)
    #: The column holding the numbers.
    to_column: str = "to"
    #: A scheduled send time for every row without a ``time`` column.
    time: str | None = None
    #: Whether the run may send ``/sms/json`` requests (``personalised = "json"``): without
    #: them, an ``entity_id`` (which only they carry) is refused.
    json: bool = True

    @property
    def type(self) -> str:
        """The message type of rows without a ``type`` column."""
        return self.defaults.type or default_type(self.pod)

    def record(self) -> dict[str, Any]:
        """The message options as the journal keeps them, to compare on ``--resume``."""
        d = self.defaults
        return {
            "pod": self.pod,
            "to_column": self.to_column,
            "body": d.body,
            "sender": d.sender,
            "type": self.type,
            "template_id": d.template_id,
            "template_data_columns": list(d.template_data_columns),
            "unicode": d.unicode,
            "flash": d.flash,
            "time": self.time,
            "callback_profile_id": d.callback_profile_id,
            "entity_id": d.entity_id,
        }


class RowPreparer:
    """Validates rows against a :class:`RowPlan`; one instance per run (it holds the caches)."""

    def __init__(self, plan: RowPlan, *, normalize: PhoneNormalizer, now: datetime) -> None:
        _check_defaults(plan, now)
        self.plan = plan
        self._normalize = normalize
        self._now = now
        self._messages: dict[Message, Message | ValidationError] = {}
        #: What the last message that passed India's DLT check had of what the check reads.
        self._dlt_passed: tuple[str | None, str | None] | None = None
        self._columns: frozenset[str] = frozenset()
        self._to_column = plan.to_column
        self._overrides: tuple[str, ...] = ()
        self._fill_body = False
        # The columns a row's message depends on: rows with equal values there get the very same
        # validated Message and segment count, found with one dict lookup instead of being built,
        # checked and counted again.
        self._key_columns: tuple[str, ...] = ()
        self._key_of: Callable[[Mapping[str, str]], object] = _values_of(())
        self._by_key: dict[object, _Entry] = {}
        self._caching = True
        #: The row number the cache was last emptied at.
        self._cached_since = 0
        # The columns a message depends on but for its body, and the messages they make,
        # validated with a stand-in body.
        self._body_column = False
        self._base_columns: tuple[str, ...] = ()
        self._base_key_of: Callable[[Mapping[str, str]], object] = _values_of(())
        self._bases: dict[object, Message | ValidationError] = {}

    def check_header(self, header: tuple[str, ...]) -> None:
        """Check that the input has the columns the plan needs.

        Raises:
            ConfigError: the number column or a template-data column is missing, there is no
                body nor template id anywhere, or the default body names a placeholder that is
                not a column.
        """
        columns = frozenset(header)
        to_column = self.plan.to_column
        if to_column not in columns:
            # "To", "TO": one column that differs only in case is clearly the one meant.
            same = [c for c in header if c.casefold() == to_column.casefold()]
            if len(same) != 1:
                hint = ""
                if len(header) == 1 and any(d in header[0] for d in ";\t|"):
                    hint = " (is the file separated by something else than commas? --delimiter)"
                elif any(_LOOKS_LIKE_NUMBER.fullmatch(name) for name in header):
                    hint = " (the first line looks like data: is the header row missing?)"
                raise ConfigError(
                    f"input has no {to_column!r} column (columns: {', '.join(header)}); "
                    f"use --to-column to name the column that holds the numbers{hint}"
                )
            to_column = same[0]
        self._to_column = to_column
        missing = [c for c in self.plan.defaults.template_data_columns if c not in columns]
        if missing:
            raise ConfigError(f"template-data column(s) not in the input: {', '.join(missing)}")
        defaults = self.plan.defaults
        # A rule every row would break for the same reason is said once, before anything runs.
        if not defaults.body and not defaults.template_id and not {"body", "template_id"} & columns:
            raise ConfigError(
                "no message body: give --body (or body in the config), a 'body' column, "
                "or a template_id"
            )
        if not defaults.sender and "sender" not in columns:
            raise ConfigError(
                "no sender: give --sender (or sender in the config) or a 'sender' column; every "
                "SMS carries a sender ID"
            )
        if self.plan.pod == "IN" and not defaults.template_id and "template_id" not in columns:
            raise ConfigError(
                "no template id on the IN pod: India's DLT rules make the registered template "
                "id mandatory for messages to Indian numbers; give --template-id (or "
                "template_id in the config) or a 'template_id' column"
            )
        if "entity_id" in columns and not self.plan.json:
            raise ConfigError(_NO_JSON_FOR_ENTITY_ID)
        if defaults.template_data_columns and (defaults.body or "body" in columns):
            logger.warning(
                "rows with a body ignore --template-data: Kaleyra sends the body and ignores "
                "template_id's template_data when a body is present"
            )
        if self.plan.defaults.body and "body" not in columns:
            unknown = [n for n in placeholders(self.plan.defaults.body) if n not in columns]
            if unknown:
                raise ConfigError(
                    f"the body uses placeholder(s) {', '.join('{' + n + '}' for n in unknown)} "
                    "that are not input columns (write {{ and }} for literal braces)"
                )
        self._columns = columns
        self._overrides = tuple(c for c in MESSAGE_COLUMNS if c in columns)
        self._fill_body = "body" in columns or bool(
            self.plan.defaults.body and has_placeholders(self.plan.defaults.body)
        )
        if "body" in columns:  # a row's body may name any column
            key_columns = [c for c in header if c != to_column]
        else:
            key_columns = [*self._overrides, *placeholders(self.plan.defaults.body or "")]
            key_columns += self.plan.defaults.template_data_columns
        self._key_columns = tuple(dict.fromkeys(key_columns))
        self._key_of = _values_of(self._key_columns)
        self._body_column = "body" in columns
        base_columns = [c for c in self._overrides if c != "body"]
        self._base_columns = tuple(
            dict.fromkeys([*base_columns, *self.plan.defaults.template_data_columns])
        )
        self._base_key_of = _values_of(self._base_columns)

    def prepare(self, row: InputRow) -> PreparedRow | RowResult:
        """Return the row ready to send, or its ``invalid`` result."""
        fields = row.fields
        raw_to = fields.get(self._to_column, "").strip()  # an unreadable row may still have it
        if row.error is not None:
            return _invalid(row.row, raw_to, "invalid_row", row.error)
        if not raw_to:
            return _invalid(row.row, raw_to, "invalid_to", f"{self._to_column}: missing number")
        try:
            to = self._normalize(raw_to)
        except ValidationError as exc:
            return _invalid(row.row, raw_to, exc.code, str(exc))
        if self._caching:
            key = self._key_of(fields)
            entry = self._by_key.get(key)
            if entry is None:
                entry = self._entry(fields)
                self._keep(key, entry, row.row)
        else:
            entry = self._entry(fields)
        if isinstance(entry, ValidationError):
            # Cached failures come back as values: re-raising one instance would grow its traceback.
            return _invalid(row.row, raw_to, entry.code, str(entry))
        message, body, info = entry
        if dlt_applies(self.plan.pod, to) and dlt_fields(message) != self._dlt_passed:
            try:
                check_dlt(message)
            except ValidationError as exc:
                return _invalid(row.row, to, exc.code, str(exc))
            # By what it reads, not by message: a personalised row's message is new every row.
            self._dlt_passed = dlt_fields(message)
        return PreparedRow(
            row.row, to, message, info.segments, info.encoding, info.unicode_chars, body
        )

    def _keep(self, key: object, entry: _Entry, row: int) -> None:
        """Cache a new key's entry. A full cache starts over; one that filled up in fewer than
        twice as many rows (every row's message its own: a body column) is dropped for the rest
        of the run, as looking up and keeping cost more than they save."""
        cache = self._by_key
        if len(cache) >= _MAX_CACHED_MESSAGES:
            if row - self._cached_since < 2 * len(cache):
                self._caching = False
            cache.clear()
            self._cached_since = row
        if self._caching:
            cache[key] = entry

    def _entry(self, fields: Mapping[str, str]) -> _Entry:
        """A new key's message and its segment count, or the rule it breaks."""
        body = fields["body"].strip() if self._body_column else ""
        body_or_default = body or self.plan.defaults.body
        try:
            # Every placeholder and escape holds a brace: a body without one is filled already.
            if (
                body_or_default is not None
                and self._fill_body
                and ("{" in body_or_default or "}" in body_or_default)
            ):
                body_or_default = fill_placeholders(body_or_default, fields)
            # Everything but the body is checked once per distinct value (a personalised
            # campaign changes only the body), then each row's body by the body's rules alone.
            key = self._base_key_of(fields)
            base = self._bases.get(key)
            if base is None:
                base = _remember(self._bases, key, lambda: self._validated(fields, _BODY_STAND_IN))
            if isinstance(base, ValidationError):
                # Report the first rule the row's own message breaks, as validate_message does.
                message = self._validated(fields, body_or_default)
                if isinstance(message, ValidationError):
                    return message
            elif self._fill_body and body_or_default is not None:
                # A body of the row's own goes beside the base that rows share: no Message is
                # built per row. Every such row of the run takes this form (Batcher.add).
                info = analyse(body_or_default, unicode=base.unicode)
                # GSM-7 found in the text itself: GSM 03.38 characters only.
                gsm = info.encoding == "GSM-7" and base.unicode in _DETECTED
                check_own_body(base, body_or_default, gsm_text=gsm)
                return base, body_or_default, info
            else:
                message = validate_message_body(base, body_or_default)
        except ValidationError as exc:
            return exc
        return message, None, analyse(message.body or "", unicode=message.unicode)

    def _validated(self, fields: Mapping[str, str], body: str | None) -> Message | ValidationError:
        plan = self.plan
        values: dict[str, str] = {}
        for column in self._overrides:
            value = fields[column].strip()
            if value:
                values[column] = value
        flash = plan.defaults.flash
        if "flash" in values:
            flash = validate_flash(values["flash"])
        ref_custom: tuple[str, ...] = ()
        if "ref_custom" in values:
            ref_custom = ref_custom_cell(values["ref_custom"])
        candidate = Message(
            body=body,
            sender=values.get("sender", plan.defaults.sender),
            type=values.get("type", plan.type),
            template_id=values.get("template_id", plan.defaults.template_id),
            template_data=tuple((c, fields[c]) for c in plan.defaults.template_data_columns),
            unicode=values.get("unicode", plan.defaults.unicode),
            flash=flash,
            time=values.get("time", plan.time),
            callback_profile_id=values.get(
                "callback_profile_id", plan.defaults.callback_profile_id
            ),
            ref_custom=ref_custom,
            ref=values.get("ref"),
            ref1=values.get("ref1"),
            ref2=values.get("ref2"),
            entity_id=values.get("entity_id", plan.defaults.entity_id),
        )
        # Rows whose key columns differ may still make the same message (a name column the
        # body doesn't use): validate each distinct message once.
        cached = self._messages.get(candidate)
        if cached is None:
            cached = _remember(
                self._messages,
                candidate,
                lambda: validate_message(candidate, pod=plan.pod, now=self._now),
            )
        return cached


def _remember(
    cache: dict[K, Message | ValidationError],
    key: K,
    compute: Callable[[], Message | ValidationError],
) -> Message | ValidationError:
    """Compute, keep (a failure as a value) and return; a full cache starts over, so that
    personalised bodies can't make it grow forever."""
    try:
        value = compute()
    except ValidationError as exc:
        value = exc
    if len(cache) >= _MAX_CACHED_MESSAGES:
        cache.clear()
    cache[key] = value
    return value


def _values_of(columns: tuple[str, ...]) -> Callable[[Mapping[str, str]], object]:
    """A row's values in ``columns`` as one hashable key (an itemgetter: no loop per row)."""
    if not columns:
        return lambda fields: ()
    return operator.itemgetter(*columns)


def _check_defaults(plan: RowPlan, now: datetime) -> None:
    """A default that breaks a rule would make every row that uses it invalid: refuse it now.

    Raises:
        ConfigError: naming the option (``sender``, ``type``, ``template_id``, ...) and the rule.
    """
    checks: list[tuple[str | None, Callable[[str], object]]] = [
        (plan.defaults.sender, lambda v: validate_sender(v, pod=plan.pod)),
        (plan.type, lambda v: validate_type(v, pod=plan.pod)),
        (plan.defaults.template_id, validate_template_id),
        (plan.defaults.unicode, validate_unicode),
        (plan.time, lambda v: validate_time(v, now=now)),
        (plan.defaults.entity_id, validate_entity_id),
    ]
    try:
        for value, check in checks:
            if value:
                check(value)
        if plan.defaults.body and plan.defaults.body.strip():
            validate_body(plan.defaults.body, template_id=plan.defaults.template_id)
    except ValidationError as exc:
        raise ConfigError(f"default {exc.field}: {exc.reason}") from None
    if plan.defaults.entity_id and not plan.json:
        raise ConfigError(_NO_JSON_FOR_ENTITY_ID)


def _invalid(row: int, to: str, code: str, reason: str) -> RowResult:
    return RowResult(row=row, to=to, status="invalid", error_code=code, error=reason)
