"""A local Kaleyra-compatible SMS server for demos, CI, reliability tests and benchmarks.

It never contacts Kaleyra. Run it with ``python -m kaleyra_async sandbox`` (see ``--help``), in
process with ``async with Sandbox(SandboxConfig(...)) as sandbox:``, or as a child process with
``SandboxProcess``. Where Kaleyra's documentation is silent, the sandbox picks one plausible
behaviour; each such choice is marked **(ours)** below, so that you know which parts of a green
CI run prove something about Kaleyra and which only prove consistency with this sandbox.

Credentials
    SID ``HXSANDBOX00001IN``, ``api-key`` header ``sandbox-key`` (change with ``--sid`` and
    ``--api-key``). A wrong or missing key, or another SID in the path, gives 401 ``E100``.

Endpoints (``<SID>`` is the account SID)
    ``POST /v1/<SID>/sms`` and ``POST /v1/<SID>/messages``: send one body to 1-100 recipients.
    ``POST|DELETE /v1/<SID>/sms/sender`` and ``/v1/<SID>/messages/sender``: sender IDs.
    ``GET /v1/<SID>/sms/status`` and ``/v1/<SID>/messages/status``: delivery status.
    ``POST /v1/<SID>/sms/json``: personalised bodies, one ``sms[]`` node per recipient, at most
    ``--json-max-nodes`` (1000) of them; see ``_json_route`` for the rules and what is (ours).
    Its ledger lines carry each node's own sender, body and template id.

Send requests
    Bodies are JSON (``application/json``, or no Content-Type: the pages' only allowed type)
    or form fields (``application/x-www-form-urlencoded``, as the two-way sample sends); any
    other type is 415 ``E400``. In form mode ``template_data`` may be a JSON string and each
    repeated ``ref_custom`` field is one value. ``to`` is comma-separated numbers or a JSON
    array of them. A number keeps its country code: it has one when it starts with "+" or has
    11 to 15 digits (the checklist's "918888888888") **(ours**: the pages give no rule; the big
    markets' national numbers have at most 10 digits); ``prefix`` (e.g. ``+91``) goes in front
    of a number without one only, a trunk 0 dropped ("If the mobile number does not have a
    country code"). Without a prefix, a 10-digit number on the IN pod is Indian (the checklist:
    for India the country code "may or may not be applied"); elsewhere it is refused (E403),
    never read as ``+9876543210``. Numbers get a cheap E.164 *shape* check, not a
    numbering-plan check: the client validates fully with phonenumbers, and doing that here
    would make the sandbox the bottleneck of every benchmark. Patterns match ASCII digits only.
    Duplicate numbers are kept, each with its own message id **(ours)**. Unknown fields
    (``callback``, ``source``) are ignored; ``callback_profile_id`` only asks for delivery
    callbacks (below).

    ``sender`` is mandatory on every pod (the pages' tables; E418). India's DLT rules bind a
    request from the IN pod to an Indian (91) number: ``template_id`` is mandatory ("For Indian
    customers, it is mandatory to use the Template ID"; E417), and an alphabetic sender is a DLT
    header, "a string of 6 alphabetic characters" (the checklist), any case. Numeric senders,
    "+" allowed (the two-way "+17XXXXXXXX4"), go anywhere; other senders, including an IN
    account's to other countries (the checklist allows them), are 1-11 letters and digits
    **(ours**: GSM's limit, the pages give none). Senders need not be registered **(ours)**. A
    missing ``type`` means TXN on the IN pod, DEFAULT elsewhere.

    When a ``body`` is present, ``template_id`` and ``template_data`` are ignored, not checked
    ("body will have priority"): ``template_id: " "`` next to a body is accepted (but on the IN
    pod to an Indian number a blank template id is a missing one). Without a body,
    ``template_id`` is 12-30 digits and ``template_data`` values at most 30 characters.
    ``ref``, ``ref1`` and ``ref2`` take up to 255 characters each (the page's Optional
    Parameters; the digest's 150 is older). ``time`` is ISO-8601 with an offset: the page's
    ``+HH:MM``, and "Z" and fractions of a second too **(ours)**.

    Success is HTTP 202 **(ours**: the pages print no status) with the pages' shape, on
    ``/sms`` and ``/messages`` alike; ``template_id`` is echoed after ``type`` when the request
    had one, as the "Send OTP SMS" sample for India shows::

        {"id": "<uuid>", "sender": "KLRHXA", "type": "TXN", "template_id": "1107...",
         "body": "...", "createdDateTime": "2025-01-31 10:42:23+00:00", "totalCount": 2,
         "data": [{"message_id": "<uuid>:1", "recipient": "919876543210"}, ...],
         "dlrurl": null, "error": {}}

    plus ``"flash": 1`` when ``flash=1`` and ``"unicode": 1`` when ``unicode=1`` **(ours)**.
    ``body`` is null for template-only sends.

Errors
    Kaleyra's envelope: ``{"code", "message", "error": {"<field>": "<message>"}}`` for send and
    status errors, as the E401 and E404 samples print it (no ``data``), and ``{"code",
    "message", "data": [], "error": {...}}`` elsewhere, as the sender pages print it. An error
    that names no field is ``{"error": "<message>"}`` (RBC192's shape). E401, E404, MSG106,
    MSG108, MSG134 and RBC192 are Kaleyra's, with the pages' texts where the pages give them
    (E401 "SMS length is exceeding 4000 characters."; E404 "If Type is OTP then only one mobile
    number is allowed.", keyed by ``"time"`` as the page prints it); the other codes and all
    other messages are **(ours)**. Checks run in the order of this table; the first failure
    answers. 429 answers carry ``Retry-After``.

    ======  ======  ======================================================================
    code    HTTP    meaning
    ======  ======  ======================================================================
    E001    404     no such endpoint
    E002    405     method not allowed on this endpoint (``Allow`` header lists the right one)
    E100    401     unknown SID in the path, missing or wrong ``api-key`` header
    E429    429     over ``--rate`` requests per sliding second, or an injected 429;
                    ``Retry-After`` header in whole seconds (at least 1)
    E503    503     injected fault: refused before handling, nothing accepted
    E500    500     injected fault *after* the recipients were accepted (see Faults)
    E400    400     body is not JSON (the message names the mistake when it is one of the
                    pages' samples') / not an object / not UTF-8 form data; a field has the
                    wrong JSON type; 415 for an unsupported Content-Type; also malformed
                    HTTP (400) and bodies over 1 MiB (413), both closing the connection
    E402    400     ``to`` missing or empty
    E405    400     more than 100 recipients
    E403    400     a recipient is not E.164-shaped or has no country code (and no prefix
                    to complete it), or ``prefix`` is not a country code
    E408    400     ``type`` not valid for the pod (IN: OTP, TXN, TXND, MKT; others: OTP, DEFAULT)
    E404    400     OTP request with more than one recipient
    E406    400     neither ``body`` nor ``template_id``
    E417    400     IN pod, an Indian number, no ``template_id`` (India's DLT rule)
    E401    400     ``body`` longer than 4000 characters
    E407    400     no body and ``template_id`` not 12 to 30 digits
    E413    400     no body and ``template_data`` not an object of strings, or a value over
                    30 characters
    E418    400     no ``sender`` (mandatory on every page; India's DLT rule names it too)
    E415    400     ``sender`` not valid (see above)
    E409    400     ``unicode`` not AUTO, 0 or 1
    E410    400     ``flash`` not 0 or 1 (JSON true/false also accepted)
    E411    400     ``time`` not ISO-8601 with a UTC offset
    E412    400     ``time`` less than 15 minutes or more than 3 calendar months ahead
                    (30 Nov + 3 months is 28/29 Feb)
    E414    400     ``ref_custom`` not a list, more than 5 values or a value over 50 characters
    E416    400     ``ref``, ``ref1`` or ``ref2`` over 255 characters
    E420    400     status call without ``message_ids``
    E421    400     status call with more than 100 ``message_ids``
    MSG134  400     sender IDs: one or more items invalid, duplicate or (delete) unknown;
                    nothing is created or deleted (all-or-nothing)
    RBC192  400     more than 5000 sender IDs to create, or more than 100 to delete
    E005    409     ``GET /_sandbox/ledger`` while the ledger is not kept in memory
    ======  ======  ======================================================================

Sender IDs
    Create: ``{"data": [{"sender", "description", "iso_code", "entity_id"}, ...]}``, at most
    5000 (more: the page's RBC192, "Exceeded max capacity of 5000 senders"). Every field is
    mandatory ("Create Sender ID"), ``entity_id`` for India only (optional elsewhere
    **(ours)**): ``description`` non-blank; ``iso_code`` two letters; ``entity_id`` 12-30
    digits, a string or a JSON number; ``sender``, for ``in``, exactly 6 letters or digits (the
    page's own "ABCF01"; otherwise the page's "Sender ID has to be registered and it can only
    be 6 character"), elsewhere 1-11 letters/digits or a numeric sender **(ours)**, and new,
    case-insensitively **(ours)**, or "Sender ID Already exist.". A failure is the page's
    MSG134, "Sender IDs not created", with ``error`` keyed by item index: ``{"0": {"sender":
    "<reason>", "sender_name": "ABCF01"}}`` (the reason's key is the field at fault). Success:
    200 ``MSG106`` "Your Sender ID is submitted and will be verified by a Kaleyra Support Team
    member." with one ``{"id", "status": "1", "sender", "message", "code": "MSG106"}`` item per
    sender (``id`` a number the sandbox counts from 60001 **(ours)**). Delete: ``{"sender":
    ["ABCDEF", ...]}``, at most 100; success 200 ``{"code": "MSG108", "message": "Sender ID(s)
    deleted successfully", "data": [], "error": {}}``; deleting an unknown sender fails the
    whole call with ``MSG134`` "Sender IDs not deleted" **(ours)**.

    The sandbox states every rule in this reference itself (``sandbox/_rules.py``, read from
    Kaleyra's pages) and imports none of the client's, on purpose: a rule shared by both sides
    could never show the client misreading the pages.

Kaleyra's own samples
    The pages' samples carry mistakes; the sandbox takes each one as the page's text says, and
    its refusal names the mistake (``tests/test_sandbox_pages.py`` feeds every sample):

    * "Send OTP SMS" sends form fields (curl ``-d``) under ``Content-Type: application/json``:
      refused (E400: "it holds form fields ... as the curl samples of 'Send OTP SMS' do"); the
      page's parameter table says JSON is the only type, and the fields are taken as form data
      under the form type.
    * "Send the First SMS" writes ``"ref_custom: "['John','Doe']"``: the key lacks its closing
      quote and the body is never closed (E400 names the key); mended, the value is a string
      where the table says List: refused (E414 names the sample).
    * "Create Sender ID" puts a comma before each ``}`` (E400 names it), and its ``ADPAI`` has 5
      characters for ``in``: refused with the page's own MSG134 reason.
    * Its MSG106 sample lacks the opening brace and prints ids like ``6XX67``; the sandbox's ids
      are JSON numbers. The E404 sample keys its reason by ``"time"``; copied as printed.
    * The two-way sample's ``--date-urlencode 'template_id: ...'`` is not a curl option (curl
      stops there); the rest of the sample is accepted.

Status API
    ``?message_ids=a:1,b:2`` (at most 100 **(ours)**) answers 200 with ``{"data": [{"campaign_id",
    "status", "status_details"}], "error": {}}``; ``/sms/status`` entries also carry
    ``message_id`` **(ours: that body was never captured)**. A message is ``Sent``/``SENT`` until
    ``--deliver-after-s`` (2 s) of the sandbox's clock have passed since acceptance, then
    ``Delivered``/``DELIVERED``. ``--fail-numbers`` rules match the last digits of a recipient:
    by default ``...0000`` is ``NotSent``/``KLR-INV-NUMBER`` from the start and ``...9999`` turns
    from ``Sent`` into ``UnDelivered``/``ABSENT-SUB``. Ids the sandbox never issued (or forgot:
    it remembers the last ``--status-capacity`` requests) are ``NotFound``/``MESSAGE-NOT-FOUND``
    entries, not an HTTP error **(ours)**.

Delivery callbacks
    ``--callback-url URL`` (``Sandbox(..., callbacks=SandboxCallbacks(url=...))``): for every
    accepted recipient of a request that named a ``callback_profile_id``, the sandbox sends a
    ``Sent`` receipt and then a final one, with the documented callback names (``id``,
    ``recipient`` without "+", ``source`` (the sender), ``status``, ``status_trace``,
    ``description``, ``timestamp`` as ``YYYY-MM-DD HH:MM:SS`` UTC without a zone, and the
    request's ``ref``, ``ref1``, ``ref2``). On ``/sms/json`` each node counts alone: its own
    ``callback_profile_id``, refs and ``from``, else the top level's; a node with no profile
    gets no receipts **(ours)**. Receipts go as a JSON POST (default), a form POST or a GET query
    (``--callback-method``). Each message's fate is drawn from the seed and its id alone
    **(ours**: 88 % delivered, 6 % ``UnDelivered``, 4 % ``NotSent``, 2 % ``Failed``, with the
    status-trace table's codes; a ``--fail-numbers`` rule wins), after a delay of 0.05-0.5 s;
    spellings vary as Kaleyra's pages do (``Delivered``/``DELIVERED``, ``NotSent``/``NOT-SENT``,
    ...). While callbacks are on, the status API answers from the same fates (``Sent`` until the
    delay has passed). 5 % of final receipts are sent twice, 5 % before their ``Sent``, and for
    2 % of requests every receipt goes out before the send's answer, which is held back 0.3 s.
    An answer other than 2xx, or none, is retried 4 more times, 0.5 s apart and doubling
    (Kaleyra retries failed callbacks; its schedule is not published) **(ours)**. Every receipt
    the receiver answered 2xx is a line of ``--callback-ledger PATH`` (the fields plus
    ``http_status`` and ``attempt``).

Rate limit
    ``--rate N``: at most N API requests (any endpoint, any answer but 401/404/405) admitted in
    any sliding one-second window per account; only admitted requests count against the limit.
    Over it: 429 ``E429`` with ``Retry-After`` (seconds until the window has room, rounded up).

Latency and faults
    ``--latency-ms N`` delays every API answer by N ms without blocking other requests.
    ``--faults "429=0.05,503=0.02,500_after_accept=0.01,reset_before=0.01,
    reset_after_accept=0.01,slow=0.01"`` draws one seeded random number (``--seed``) per
    authenticated, non-throttled API request, so the sequence of faults is reproducible:

    * ``429``, ``503``: refused without accepting anything.
    * ``reset_before``: the connection is reset (TCP RST) without accepting anything.
    * ``500_after_accept``: the request is handled and its recipients **are accepted** (ledger,
      status API, stats), then the answer is a 500 ``E500`` envelope.
    * ``reset_after_accept``: accepted, then the connection is reset with no answer.
    * ``slow``: accepted and answered normally, but ``--slow-ms`` (30 s) late, so that client
      read timeouts fire.

    The after-accept faults only apply to requests that would have succeeded; a failing request
    gets its own error. Ledger records of a faulted request carry the fault's name.

Ledger
    Each accepted recipient is one NDJSON line in ``--ledger PATH`` (appended, never truncated):
    ``message_id``, ``request_id``, ``recipient`` (E.164 with ``+``), ``sender``, ``type``,
    ``body``, ``template_id``, ``accepted_at`` (ISO-8601 UTC), ``fault``. Lines are written every
    ``--flush-interval-s`` (0.2 s) and on a clean stop (then fsynced); a ``kill -9`` loses at
    most that interval's lines (or 1 MiB): written lines are in the OS page cache and survive
    the process, and only a machine crash can lose those too. In process,
    ``Sandbox.ledger_records()`` returns the same records from memory (``keep_in_memory``, on by
    default; off by default in the CLI, where ``--keep-in-memory`` turns it on, so that
    million-message benchmarks stay small).

Control surface (no auth, not rate limited, not counted in stats)
    ``GET /_sandbox/stats``: ``requests_total``, ``by_status``, ``accepted_requests``,
    ``accepted_recipients``, ``faults``, ``max_requests_in_1s`` (the most API requests that
    arrived in any sliding one-second window, computed incrementally over a bounded deque),
    ``tightest_span_s`` (with a rate limit: the shortest time in which ``rate_per_s + 1``
    requests arrived; over 1 s means no second held more than the rate, and the excess is the
    margin the client left; null until that many arrived), ``silence_before_tightest_s`` (the
    time between that span's first arrival and the one before it: tens of ms when the span began
    with a bunch a stall on either side held back; null when the span began with the first),
    ``mean_rate_per_s`` ((arrivals - 1) / ``active_s``), ``active_s`` (first to last arrival),
    ``first_arrival_s``, ``last_arrival_s``. ``POST /_sandbox/reset`` forgets stats, sender IDs,
    issued messages and the in-memory ledger (not the ledger file) and restarts the seeded fault
    sequence, so every run after a reset meets the same faults; request ids are never reissued.
    ``GET /_sandbox/ledger`` and ``GET /_sandbox/config`` (no API key in it) help scripts.

HTTP
    HTTP/1.1 with keep-alive and pipelining (answers leave in request order); Content-Length
    or chunked request bodies up to 1 MiB.
"""

from ._callbacks import SandboxCallbacks
from ._config import DEFAULT_API_KEY, DEFAULT_SID, FailRule, FaultSpec, SandboxConfig, parse_faults
from ._process import SandboxProcess
from ._server import Sandbox
from ._stats import SandboxStats
from ._values import LedgerRecord

__all__ = [
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
