"""Built-in secret maskers, and composition of redaction hooks.

``secrets()`` returns a redaction hook (``Callable[[str], str]``) that replaces common secrets with a typed,
stable marker, ``[REDACTED:<kind>#<hash>]``: ``<hash>`` is the first 12 hex digits of an HMAC-SHA256 of the
secret (card digits without separators, e-mail addresses lower-cased), so the same secret always gives the same
marker and grouping by a masked value (a user id that is an e-mail address) still works, while the marker tells
nothing about the secret to whoever lacks the key. The key: ``secrets(key=...)``, else
``$GALTEA_OTEL_REDACT_KEY``, else one drawn at random per process (masks are then stable within the process
only: set the variable, to the same value in the application and the receiver, for masks stable across
processes and restarts).

======================  ===========================================================================================
kind                    what
======================  ===========================================================================================
``api_key``             OpenAI / Anthropic ``sk-...`` (``sk-proj-``, ``sk-ant-``...), AWS access key ids
                        (``AKIA`` / ``ASIA``), Google ``AIza...``, GitHub ``ghp_`` / ``gho_`` / ``ghu_`` / ``ghs_`` /
                        ``ghr_`` / ``github_pat_``, Slack ``xox[abposr]-``; and the value of ``api_key=...``,
                        ``"apiKey": "..."``, ``x-api-key: ...``
``jwt``                 JSON Web Tokens (``eyJ...``.``eyJ...``.``...``)
``bearer_token``        the token of ``Bearer <token>``
``authorization``       the value of ``Authorization: ...`` (scheme included)
``cookie``              the value of ``Cookie: ...`` / ``Set-Cookie: ...``
``token``               the value of ``access_token=...``, ``refresh_token``, ``id_token``, ``auth_token``...
``password``            the value of ``password=...`` / ``passwd``
``secret``              the value of ``client_secret=...``, ``secret_key``, ``private_key``,
                        ``aws_secret_access_key``
``card``                payment card numbers: 13 to 19 digits (spaces or dashes allowed between them), first digit
                        2 to 6, passing the Luhn check (so most order ids and timestamps are kept)
``email``               e-mail addresses
``private_key``         PEM private keys (``-----BEGIN [RSA |EC |OPENSSH |ENCRYPTED ...]PRIVATE KEY-----`` through
                        its ``-----END ...-----`` line, or to the end of its base64 body when cut off)
======================  ===========================================================================================

:func:`redact_row` applies a hook to every text field of a translated span row (name, model, session key, user
id, error, context, input / output, messages, metadata...) in one place: what the store and the sync receive.

Properties the tests hold it to:

- **JSON stays JSON**: when the text is valid JSON, only the contents of string values are changed (each string
  is decoded, masked and re-encoded), plus a card number written as a JSON integer, which becomes the string
  ``"[REDACTED:card]"``. The value of an object member whose *name* is a credential (``"api_key"``,
  ``"Authorization"``, ``"password"``...) is masked whole. Other text is masked as plain text.
- **Idempotent**: masking masked text changes nothing, so applying it in the application and again in the
  receiver is harmless.
- **Cheap when there is nothing to mask**: one combined regular-expression pass over the text decides; only
  texts with a candidate pay for the rest.

Secrets written with JSON ``\\uXXXX`` escapes inside a string are seen only after decoding, i.e. when something
else in the text triggers the slow path; markers are plain ASCII without quotes or backslashes.

``chain(*hooks)`` runs hooks in order (``None`` entries are skipped), e.g.
``configure(redact_secrets=True, redact=mine)`` is ``chain(secrets(), mine)``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from galtea_otel.translate.row import SpanRow

__all__ = ["ENV_REDACT_KEY", "RULES", "Redactor", "SecretMasker", "chain", "luhn_ok", "marker", "redact_row",
           "secrets"]

Redactor = Callable[[str], str]

RULES = ("api_key", "jwt", "bearer_token", "credential", "card", "email", "private_key")
"""Rule names for ``secrets(skip=...)``; ``credential`` is the ``name: value`` / ``name=value`` rule (api_key,
authorization, cookie, token, password, secret kinds)."""

MARKER_PREFIX = "[REDACTED:"
ENV_REDACT_KEY = "GALTEA_OTEL_REDACT_KEY"
HASH_HEX_DIGITS = 12


def marker(kind: str, secret: str | None = None, key: bytes | None = None) -> str:
    """``[REDACTED:<kind>#<hash>]`` for ``secret`` (keyed with ``key``, default: the process's key, see the module
    documentation); ``[REDACTED:<kind>]`` without a secret."""
    if secret is None:
        return f"{MARKER_PREFIX}{kind}]"
    digest = hmac.new(key if key is not None else _process_key(), secret.encode("utf-8", "replace"),
                      hashlib.sha256).hexdigest()
    return f"{MARKER_PREFIX}{kind}#{digest[:HASH_HEX_DIGITS]}]"


_PROCESS_KEY: bytes | None = None


def _process_key() -> bytes:
    global _PROCESS_KEY
    if _PROCESS_KEY is None:
        configured = os.environ.get(ENV_REDACT_KEY, "")
        _PROCESS_KEY = configured.encode("utf-8") if configured else os.urandom(32)
    return _PROCESS_KEY


_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")  # a digit doubled, its digits summed


def luhn_ok(digits: str) -> bool:
    """True when the decimal ``digits`` pass the Luhn checksum."""
    backwards = digits[::-1]
    kept, doubled = backwards[0::2], backwards[1::2].translate(_LUHN_DOUBLE)
    return (sum(map(int, kept)) + sum(map(int, doubled))) % 10 == 0


# --- the rules -------------------------------------------------------------------------------------------------------
#
# Speed: ``re`` skips fast only to a literal prefix; a pattern starting with a character class or an alternation is
# tried at nearly every position (one alternation of every rule ran at ~3 MB/s). So every rule here is a set of
# regular expressions each led by a literal ("sk-", "eyJ", "@", "token"...) and run only when ``literal in text``;
# left boundaries and the left part of credential names are checked in Python, on the (rare) matches. Only card
# numbers need a scan of digits. Case-insensitive rules run on an ASCII-lower-cased copy of the text (same length).

_CREDENTIAL_KINDS: tuple[tuple[str, str], ...] = (
    ("authorization", r"(?:proxy-)?authorization"),
    ("api_key", r"(?:x-)?api[_-]?key"),
    ("secret", r"client[_-]?secret|(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key|private[_-]?key"),
    ("token", r"(?:access|refresh|id|auth|api|session|bearer|github|slack)[_-]?token"),
    ("password", r"passw(?:or)?d"),
)
_CREDENTIAL_NAMES = "|".join(pattern for _, pattern in _CREDENTIAL_KINDS)
_KIND_OF_NAME = [(re.compile(pattern, re.IGNORECASE), kind) for kind, pattern in _CREDENTIAL_KINDS]
_CREDENTIAL_NAME = re.compile(_CREDENTIAL_NAMES)
# A JSON member name naming a credential: the whole name, or its last ``_`` / ``-`` / ``.`` separated part(s).
_CREDENTIAL_KEY = re.compile(rf"(?:^|(?<=[^A-Za-z0-9]))(?:{_CREDENTIAL_NAMES})\Z", re.IGNORECASE)

_NOT_MASKED = r"(?!\[redacted:)"  # the credential rules run on lower-cased text
# atomic: backtracking into it must not let a value start just before a marker
_SEPARATOR = r"(?>[\"']?[ \t]*[:=][ \t]*)"
# a quoted value up to its closing quote, else one word (after an optional auth scheme)
_VALUE = (
    rf"(?P<quote>[\"'])?{_NOT_MASKED}(?P<value>(?(quote)(?:(?!(?P=quote))[^\r\n])+"
    r"|(?:(?:bearer|basic|token|digest|negotiate)[ \t]+)?[^\s\"',;&]+))"
)
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_KEY_CHARS = _WORD | {"-"}
_ALNUM = _WORD - {"_"}

_API_KEYS = (  # (literal that must occur, pattern)
    ("sk-", re.compile(r"sk-[A-Za-z0-9_-]{20,}")),
    ("AKIA", re.compile(r"AKIA[A-Z0-9]{16}(?![A-Za-z0-9]|\[REDACTED:)")),
    ("ASIA", re.compile(r"ASIA[A-Z0-9]{16}(?![A-Za-z0-9]|\[REDACTED:)")),
    ("AIza", re.compile(r"AIza[A-Za-z0-9_-]{35,}")),
    ("gh", re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}")),
    ("github_pat_", re.compile(r"github_pat_[A-Za-z0-9_]{22,}")),
    ("xox", re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")),
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"bearer[ \t]+(?!\[redacted:)[a-z0-9\-._~+/]{8,}=*")  # on lower-cased text
_COOKIE = re.compile(  # on lower-cased text; the whole header value (several name=value pairs)
    rf"cookie(?![a-z0-9_]){_SEPARATOR}[\"']?{_NOT_MASKED}(?P<value>[^\s\"'][^\r\n\"']*)"
)
# On lower-cased text: (anchor literal, pattern from the anchor, what may come before the anchor in the name).
_CREDENTIALS = tuple(
    (
        anchor,
        re.compile(rf"{anchor}{rest}(?P<name_end>)(?![a-z0-9_]){_SEPARATOR}{_VALUE}"),
        re.compile(rf"(?:{left})\Z"),
    )
    for anchor, rest, left in (
        ("authorization", "", r"proxy-|"),
        ("passw", "(?:or)?d", ""),
        ("secret", r"(?:[_-]?(?:access[_-]?)?key)?", r"client[_-]?|aws[_-]?|"),
        ("key", "", r"(?:x-)?api[_-]?|private[_-]?"),
        ("token", "", r"(?:access|refresh|id|auth|api|session|bearer|github|slack)[_-]?"),
    )
)
_CARD = re.compile(r"[0-9][0-9 -]{12,}")  # then split into digit groups separated by one space or dash
# ASCII text is first mapped to bytes (digit -> "0", space or dash -> "1", else "2"): scanning that is ~3x faster.
_CARD_MAP = bytes(48 if 48 <= i <= 57 else 49 if i in (32, 45) else 50 for i in range(256))
_CARD_MAPPED = re.compile(rb"0[01]{12,}")
_CARD_CHUNK = re.compile(r"[0-9]+")
_EMAIL_DOMAIN = re.compile(r"@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-]|\[REDACTED:)")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}\Z")
_EMAIL_LOCAL_CHARS = _WORD | set(".%+-")
# A PEM private key: through its END line; cut off (a truncated capture), to the end of its body characters.
# ``\\`` and the letters cover a key inside raw JSON text, where its newlines are ``\n`` escapes.
_PEM = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----[A-Za-z0-9+/=\s\\:,.-]*?"
    r"(?:-----END \1PRIVATE KEY-----|(?=[^A-Za-z0-9+/=\s\\:,.-])|\Z)")

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_COLON = re.compile(r"[ \t\r\n]*:")
_JSON_INT_CARD = re.compile(r"(?<![0-9.eE+-])-?[2-6][0-9]{12,18}(?![0-9.eE])")
_JSON_START = frozenset('{["-0123456789tfn')

Span = tuple[int, int, str, str]  # start, end, replacement, rule


def _credential_kind(name: str) -> str:
    for pattern, kind in _KIND_OF_NAME:
        if pattern.fullmatch(name):
            return kind
    return "secret"


_MARKER_END = re.compile(r"\[REDACTED:[a-z_]+(?:#[0-9a-f]+)?\]\Z")
_DECIMAL = frozenset("0123456789.")


def _blocked(text: str, start: int, before: frozenset[str]) -> bool:
    """Whether a match at ``start`` is glued to what precedes it: a character of ``before``, or a marker (so
    that masking twice changes nothing: a marker's ``]`` must not free what the masked text was blocking)."""
    if not start:
        return False
    previous = text[start - 1]
    return previous in before or (previous == "]" and _MARKER_END.search(text, max(0, start - 40), start) is not None)


_MAX_PASSES = 4
_ASCII_LOWER = {code: code + 32 for code in range(ord("A"), ord("Z") + 1)}


def _card_layout(lengths: list[int]) -> bool:
    """Digit groups printed the way cards are: one group, 4-4-4-4(-3), or 4-6-5 / 4-6-4 (Amex, Diners)."""
    if len(lengths) == 1 or lengths in ([4, 6, 5], [4, 6, 4]):
        return True
    return all(length == 4 for length in lengths[:-1]) and 1 <= lengths[-1] <= 4


def _card_spans(text: str, start: int, end: int, out: list[Span], key: bytes) -> None:
    """Card numbers inside the digit run ``text[start:end]`` (digit groups separated by one space or dash): runs
    of whole groups with 13 to 19 digits, a first digit of 2 to 6, passing the Luhn check. When such candidates
    overlap, those laid out like cards (4-4-4-4...) win, then the earliest, then the longest."""
    chunks = [(m.start(), m.end()) for m in _CARD_CHUNK.finditer(text, start, end)]
    # Luhn sums of every chunk, for both parities of where it starts: a candidate's checksum is then the sum of
    # its chunks' (no string building per candidate: a long run of digit groups costs ~1 us per group).
    sums = []
    for a, b in chunks:
        digits = text[a:b] if b - a <= 19 else ""
        plain = digits[0::2], digits[1::2]
        sums.append((
            sum(map(int, plain[0])) + sum(map(int, plain[1].translate(_LUHN_DOUBLE))),  # odd offsets doubled
            sum(map(int, plain[0].translate(_LUHN_DOUBLE))) + sum(map(int, plain[1])),  # even offsets doubled
        ))
    candidates: list[tuple[bool, int, int]] = []  # (not laid out like a card, first chunk, -last chunk)
    for first in range(len(chunks)):
        if text[chunks[first][0]] not in "23456":
            continue
        count = 0
        total = [0, 0]  # the checksum if the candidate's length is even / odd
        for last in range(first, len(chunks)):
            if last > first and chunks[last][0] - chunks[last - 1][1] != 1:
                break  # two separators in a row
            # a digit at offset i of a candidate of n digits is doubled when i + n is even
            total[0] += sums[last][1 - count % 2]
            total[1] += sums[last][count % 2]
            count += chunks[last][1] - chunks[last][0]
            if count > 19:
                break
            if count >= 13 and total[count % 2] % 10 == 0:
                lengths = [b - a for a, b in chunks[first:last + 1]]
                candidates.append((not _card_layout(lengths), first, -last))
    taken: set[int] = set()
    for _, first, minus_last in sorted(candidates):
        group = range(first, -minus_last + 1)
        if taken.isdisjoint(group):
            taken.update(group)
            a, b = chunks[first][0], chunks[-minus_last][1]
            out.append((a, b, marker("card", _card_digits(text[a:b]), key), "card"))


def _card_digits(text: str) -> str:
    return text.replace(" ", "").replace("-", "")


class SecretMasker:
    """The built-in masker (see the module documentation). Call it on any text; it never raises on a str."""

    def __init__(self, skip: Iterable[str] = (), key: bytes | str | None = None) -> None:
        self._key = key.encode("utf-8") if isinstance(key, str) else key if key is not None else _process_key()
        skipped = set(skip)
        unknown = skipped - set(RULES)
        if unknown:
            raise ValueError(f"unknown masking rule(s) {sorted(unknown)}: choose among {', '.join(RULES)}")
        self.rules = tuple(rule for rule in RULES if rule not in skipped)
        if not self.rules:
            raise ValueError("secrets(skip=...) skips every rule: nothing left to mask")
        enabled = set(self.rules)
        self._api_key = "api_key" in enabled
        self._jwt = "jwt" in enabled
        self._bearer = "bearer_token" in enabled
        self._credential = "credential" in enabled
        self._card = "card" in enabled
        self._email = "email" in enabled
        self._pem = "private_key" in enabled

    def __repr__(self) -> str:
        return f"galtea_otel.redact.secrets(rules={self.rules!r})"

    # --- entry points ------------------------------------------------------------------------------------------

    def __call__(self, text: str) -> str:
        """Mask ``text``: as JSON when it is valid JSON (it stays valid JSON), else as plain text."""
        if not isinstance(text, str):
            raise TypeError(f"secrets() masks str, not {type(text).__name__}")
        spans = self.find(text)
        if not spans:
            return text
        return self._until_stable(text, spans, as_json=_is_json(text))

    def mask_text(self, text: str) -> str:
        """Mask ``text`` as plain text."""
        spans = self.find(text)
        return self._until_stable(text, spans, as_json=False) if spans else text

    def mask_json(self, text: str) -> str:
        """Mask ``text``, valid JSON, keeping it valid JSON (string contents and card-number integers only)."""
        spans = self.find(text)
        return self._until_stable(text, spans, as_json=True) if spans else text

    def _until_stable(self, text: str, spans: list[Span], *, as_json: bool) -> str:
        """Mask, then mask the result again while that changes it: a match hidden by an overlapping one (a
        credential inside the span of a key) is found once the first is a marker. So masking is idempotent."""
        for _ in range(_MAX_PASSES):
            masked = self._mask_json(text, spans) if as_json else _apply(text, spans)
            if masked == text:
                break
            text = masked
            spans = self.find(text)
            if not spans:
                break
        return text

    def find(self, text: str) -> list[Span]:
        """What plain-text masking would replace: ``(start, end, replacement, rule)``, sorted, not overlapping."""
        spans: list[Span] = []
        if self._api_key:
            for literal, pattern in _API_KEYS:
                if literal in text:
                    for m in pattern.finditer(text):
                        start = m.start()
                        if not _blocked(text, start, _KEY_CHARS):
                            spans.append((start, m.end(), marker("api_key", m.group(), self._key), "api_key"))
        if self._jwt and "eyJ" in text:
            for m in _JWT.finditer(text):
                start = m.start()
                if not _blocked(text, start, _KEY_CHARS):
                    spans.append((start, m.end(), marker("jwt", m.group(), self._key), "jwt"))
        if self._pem and "PRIVATE KEY-----" in text:
            for m in _PEM.finditer(text):
                body = re.sub(r"(?:\\[nr]|\s)+", "", m.group())  # the same key, raw or JSON-escaped
                spans.append((m.start(), m.end(), marker("private_key", body, self._key), "private_key"))
        if self._email and "@" in text:
            for m in _EMAIL_DOMAIN.finditer(text):
                at = m.start()
                local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
                if local is None:
                    continue
                start = local.start()
                if _blocked(text, start, _EMAIL_LOCAL_CHARS):
                    continue  # a local part longer than 64 characters: not an address
                spans.append((start, m.end(), marker("email", text[start:m.end()].lower(), self._key), "email"))
        if self._card:
            if text.isascii():
                runs = [m.span() for m in _CARD_MAPPED.finditer(text.encode("ascii").translate(_CARD_MAP))]
            else:
                runs = [m.span() for m in _CARD.finditer(text)]
            for start, end in runs:
                if _blocked(text, start, _DECIMAL):
                    # the run's first group ends a number glued to what precedes it ("1.0 4111 1111 ..."): that
                    # group is not a card's, the groups after its separator may still be one
                    first = _CARD_CHUNK.match(text, start)
                    start = first.end() + 1 if first else end
                if end - start >= 13:
                    _card_spans(text, start, end, spans, self._key)
        if self._bearer or self._credential:
            lowered = text.lower()
            if len(lowered) != len(text):  # rare (e.g. U+0130 lower-cases to two characters): lower ASCII only
                lowered = text.translate(_ASCII_LOWER)
            self._find_lowered(text, lowered, spans)
        if len(spans) > 1:
            spans = _non_overlapping(spans)
        return spans

    # --- implementation ----------------------------------------------------------------------------------------

    def _find_lowered(self, text: str, lowered: str, spans: list[Span]) -> None:
        if self._bearer and "bearer" in lowered:
            for m in _BEARER.finditer(lowered):
                start = m.start()
                if not _blocked(text, start, _WORD):
                    token = start + 6
                    while lowered[token] in " \t":
                        token += 1
                    spans.append((start, m.end(), text[start:token] + marker("bearer_token", text[token:m.end()],
                                                                               self._key), "bearer_token"))
        if not self._credential:
            return
        if "cookie" in lowered:
            for m in _COOKIE.finditer(lowered):
                start = m.start()
                if lowered.endswith("set-", 0, start):
                    start -= 4
                if not _blocked(text, start, _ALNUM):
                    value = m.start("value")
                    spans.append((start, m.end(), text[start:value] + marker("cookie", text[value:m.end()], self._key),
                                  "credential"))
        for anchor, pattern, left in _CREDENTIALS:
            if anchor not in lowered:
                continue
            for m in pattern.finditer(lowered):
                found = left.search(lowered, max(0, m.start() - 24), m.start())
                if found is None:
                    continue
                start = found.start()
                if _blocked(text, start, _ALNUM):
                    continue
                name = lowered[start:m.end("name_end")]
                if _CREDENTIAL_NAME.fullmatch(name) is None:
                    continue  # e.g. a bare "secret" or "key"
                value, kind = m.start("value"), _credential_kind(name)
                spans.append((start, m.end(), text[start:value] + marker(kind, text[value:m.end("value")], self._key),
                              "credential"))

    def _mask_json(self, text: str, spans: list[Span]) -> str:
        """Mask JSON text: the strings that hold a candidate are decoded, masked and re-encoded; a member whose
        name is a credential has its string value masked whole; card numbers written as integers are masked."""
        pieces: list[str] = []
        position = 0
        index, count = 0, len(spans)
        pending: str | None = None  # a credential member name was just seen: the kind to mask its value with
        for found in _JSON_STRING.finditer(text):
            start, end = found.span()
            gap = text[position:start]
            gap_hit = False
            while index < count and spans[index][1] <= start:
                gap_hit = gap_hit or spans[index][0] >= position
                index += 1
            pieces.append(self._mask_json_gap(gap) if gap_hit else gap)
            literal = found.group()
            hits = []
            while index < count and spans[index][0] < end:
                hits.append(spans[index])
                index += 1
            if pending is not None and gap.strip() == ":" and len(literal) > 2 \
                    and _JSON_COLON.match(text, end) is None:
                literal = f'"{marker(pending, json.loads(literal), self._key)}"'
                hits = []
            pending = None
            if hits and "\\" not in literal and hits[0][0] > start and hits[-1][1] < end:
                # no escapes: the raw spans are the decoded string's; markers need no escaping
                shifted = [(a - start - 1, b - start - 1, r, k) for a, b, r, k in hits]
                literal = '"' + _apply(literal[1:-1], shifted) + '"'
                if any(hit[3] == "credential" for hit in hits) and _JSON_COLON.match(text, end) is not None:
                    name = _CREDENTIAL_KEY.search(found.group()[1:-1])
                    if name is not None:
                        pending = _credential_kind(name.group())
            elif hits:
                decoded = json.loads(literal)
                if any(hit[3] == "credential" for hit in hits) and _JSON_COLON.match(text, end) is not None:
                    name = _CREDENTIAL_KEY.search(decoded)
                    if name is not None:
                        pending = _credential_kind(name.group())
                masked = self.mask_text(decoded)
                if masked != decoded:
                    literal = json.dumps(masked, ensure_ascii=False)
            pieces.append(literal)
            position = end
        rest = text[position:]
        pieces.append(self._mask_json_gap(rest) if index < count else rest)
        return "".join(pieces)

    def _mask_json_gap(self, gap: str) -> str:
        """Text between JSON strings: punctuation, literals and numbers; a card number as an integer is masked."""
        if not self._card or len(gap) < 13:
            return gap

        def replace(match: re.Match[str]) -> str:
            digits = match.group().lstrip("-")
            return f'"{marker("card", digits, self._key)}"' if luhn_ok(digits) else match.group()

        return _JSON_INT_CARD.sub(replace, gap)


def _non_overlapping(spans: list[Span]) -> list[Span]:
    """Sorted by start; of overlapping spans the earliest (then the longest) wins."""
    spans.sort(key=lambda span: (span[0], -span[1]))
    kept = [spans[0]]
    for span in spans[1:]:
        if span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


def _apply(text: str, spans: list[Span]) -> str:
    pieces = []
    position = 0
    for start, end, replacement, _ in spans:
        pieces.append(text[position:start])
        pieces.append(replacement)
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _is_json(text: str) -> bool:
    stripped = text.lstrip(" \t\r\n")
    if not stripped or stripped[0] not in _JSON_START:
        return False
    try:  # numbers kept as text: no float/int conversion (nor the 4300-digit int limit)
        json.loads(text, parse_int=str, parse_float=str, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False
    return True


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DEFAULT: SecretMasker | None = None


def secrets(*, skip: Iterable[str] = (), key: bytes | str | None = None) -> SecretMasker:
    """The built-in masker, a redaction hook (``Callable[[str], str]``). ``skip``: rule names of :data:`RULES`
    to leave out, e.g. ``secrets(skip=["email"])`` keeps e-mail addresses. ``key``: the key of the markers'
    hashes (default ``$GALTEA_OTEL_REDACT_KEY``, else a random key of this process)."""
    global _DEFAULT
    skipped = tuple(skip)
    if skipped or key is not None:
        return SecretMasker(skipped, key)
    if _DEFAULT is None:
        _DEFAULT = SecretMasker()
    return _DEFAULT


def chain(*hooks: Redactor | None) -> Redactor:
    """One hook running ``hooks`` in order (``None`` entries skipped). Every hook must take and return a str."""
    active = [hook for hook in hooks if hook is not None]
    for hook in active:
        if not callable(hook):
            raise TypeError(f"redaction hooks must be callables taking and returning a str, not {hook!r}")
    if not active:
        return _identity
    if len(active) == 1:
        return active[0]
    steps = tuple(active)

    def chained(text: str) -> str:
        for step in steps:
            text = step(text)
            if not isinstance(text, str):
                raise TypeError(f"the redaction hook {step!r} returned {type(text).__name__}, not str")
        return text

    chained.hooks = steps  # type: ignore[attr-defined]
    return chained


def _identity(text: str) -> str:
    return text


# Text fields of a span row that redaction covers. Left out: ids (trace, span, parent: hex), the kind and the
# session event (closed vocabularies), and the test case id (the platform's own id, matched against the test
# cases table).
ROW_TEXT_FIELDS = (
    "name", "error", "own_custom_id", "own_version", "resource_version", "custom_id", "version", "context",
    "input", "output", "model", "metadata", "user_id", "input_messages", "output_messages", "finish_reason",
)


def redact_row(row: SpanRow, redact: Redactor) -> SpanRow:
    """Apply ``redact`` to every text field of ``row`` (in place; returned for convenience)."""
    for name in ROW_TEXT_FIELDS:
        value = getattr(row, name, None)
        if isinstance(value, str) and value:
            masked = redact(value)
            if masked is not value:
                setattr(row, name, masked)
    return row
