"""India's DLT rules for a message to an Indian number sent from the IN pod (pure).

Kaleyra's pages: "For Indian customers, it is mandatory to use the Template ID" (the
``template_id`` row of "Send the First SMS"), and "A SenderID is a string of 6 alphabetic
characters" registered on the DLT portal (the checklist). Messages from the IN pod to other
countries carry neither rule: an alphanumeric or numeric sender and no template id are fine.
"""

from __future__ import annotations

from ._exceptions import ValidationError
from ._limits import DLT_HEADER, INDIA_PREFIX, NUMERIC_SENDER
from ._models import Message

__all__ = ["check_dlt", "dlt_applies"]


def dlt_applies(pod: str, number: str) -> bool:
    """Whether India's DLT rules apply: the IN pod sending to a +91 number (E.164)."""
    return pod == "IN" and number.startswith(INDIA_PREFIX)


def check_dlt(message: Message) -> None:
    """Check a validated message bound for an Indian number from the IN pod.

    Raises:
        ValidationError: ``template_id`` / ``missing_template_id`` (no DLT template id; its
            code is ``missing_template_id``), or ``sender`` / ``dlt_header`` (a sender that is
            neither a 6-letter DLT header nor a number; code ``invalid_dlt_sender``).
    """
    if not message.template_id:
        raise ValidationError(
            "template_id",
            "missing_template_id",
            "is required for a message to an Indian number: India's DLT rules make the "
            "registered template id mandatory",
            code="missing_template_id",
        )
    sender = message.sender or ""
    if not (DLT_HEADER.fullmatch(sender) or NUMERIC_SENDER.fullmatch(sender)):
        raise ValidationError(
            "sender",
            "dlt_header",
            f"{sender!r} cannot send to an Indian number: India's DLT rules need a registered "
            "header of 6 letters (or a numeric sender)",
            code="invalid_dlt_sender",
        )
