"""What a send must pass before the network (pure): the message's field rules, the pod's
endpoint rule, and India's DLT rules for each Indian number; for ``/sms/json``, the same for
every node, with errors naming the node."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._exceptions import ValidationError
from ._india import check_dlt, dlt_applies
from ._models import Message
from ._protocol import Endpoint, fields_only_in_json
from ._validate import validate_message

__all__ = ["check_nodes", "check_send"]


def check_send(
    message: Message, numbers: Sequence[str], *, pod: str, endpoint: Endpoint
) -> Message:
    """Return ``message`` validated for one ``/sms`` (or ``/messages``) request to ``numbers``
    (E.164).

    Raises:
        ValidationError: a field rule, ``endpoint`` / ``na_pod`` (the NA pod takes the /sms
            endpoints only), ``entity_id`` / ``json_only`` (send it with ``send_personalised``),
            or India's DLT rules (``_india``).
    """
    checked = validate_message(message, pod=pod)
    if only_json := fields_only_in_json(checked):
        raise ValidationError(
            only_json[0],
            "json_only",
            "only /sms/json requests carry it (send_personalised, or --entity-id in send-bulk)",
        )
    if endpoint == "messages" and pod == "NA":
        raise ValidationError(
            "endpoint", "na_pod", "the NA pod takes the /sms endpoints only (Kaleyra's notes)"
        )
    if any(dlt_applies(pod, number) for number in numbers):
        check_dlt(checked)
    return checked


def check_nodes(
    nodes: Sequence[tuple[str, Message]], *, pod: str, normalize: Callable[[str], str]
) -> list[tuple[str, Message]]:
    """Return the (E.164 number, validated message) nodes of one ``/sms/json`` request.

    Raises:
        ValidationError: as :func:`check_send`, its field prefixed with the node
            (``sms[3].body``).
    """
    valid: list[tuple[str, Message]] = []
    for i, (number, message) in enumerate(nodes):
        try:
            e164 = normalize(number)
            checked = validate_message(message, pod=pod)
            if dlt_applies(pod, e164):
                check_dlt(checked)
        except ValidationError as exc:
            raise ValidationError(
                f"sms[{i}].{exc.field}", exc.rule, exc.reason, code=exc.code
            ) from None
        valid.append((e164, checked))
    return valid
