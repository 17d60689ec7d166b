"""The session filter language, once: parsed from a URL query (the UI) or CLI flags, run as SQL by both stores.

A :class:`SessionFilter` is what a listing asks for; :func:`parse_query` reads it from ``?status=FAILED&user=u1``
and :meth:`SessionFilter.query` writes it back, so a filtered view is a URL that can be bookmarked. Paging is by
keyset on the listing order (``started_ns DESC, custom_id, version``): a :class:`Cursor` is the last row shown,
and the next page starts after it through the ``sessions_by_start_key`` index, never with an OFFSET.

Filters on ``status``, ``version``, ``user`` and the time range are indexed (``store.rows.ADDED_INDEXES``). The
others (model, metadata, has error, cost and turn ranges, production, idle-closed / reopened, the text search)
are checked row by row over a **bounded window**: the next :data:`SCAN_WINDOW` sessions of the indexed order. A
page holds the matches found there; when the window ends before the page is full, the page's ``next`` cursor
is the window's end and ``searched`` says how many sessions were looked at, so a caller can search on (the UI
shows "search older"; ``galtea-otel sessions list`` keeps going until it has ``--limit`` sessions).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # pydantic stays unimported until a record is made (the UI starts without it)
    from galtea_otel.records import Session

BASE_STATUSES = ("PENDING", "COMPLETED", "FAILED")
# Derived from the session's lifecycle markers: COMPLETED by the idle sweep, or PENDING again after an end.
LIFECYCLE_STATUSES = ("IDLE_CLOSED", "REOPENED")
STATUSES = BASE_STATUSES + LIFECYCLE_STATUSES
SCAN_WINDOW = 5000
MAX_LIMIT = 1000  # the largest page the UI serves
NO_LIMIT = 2**62  # list_sessions(limit=-1): every session
_KEY = re.compile(r"^[^\"\\\x00-\x1f]{1,200}$")
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class FilterError(ValueError):
    """A malformed filter or cursor (the UI answers 400 with this message; the CLI exits with it)."""


class Cursor(NamedTuple):
    """The position after which a page starts: the last session of the previous page, in listing order."""

    started_ns: int
    custom_id: str
    version: str

    def encode(self) -> str:
        raw = json.dumps([self.started_ns, self.custom_id, self.version], ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            started, custom_id, version = json.loads(raw)
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
            raise FilterError(f"not a page cursor: {text[:40]!r}") from exc
        if not isinstance(started, int) or not isinstance(custom_id, str) or not isinstance(version, str):
            raise FilterError(f"not a page cursor: {text[:40]!r}")
        return cls(started, custom_id, version)



class SessionPage(list["Session"]):
    """One page of a listing: a list of sessions, plus where the next page starts (None: nothing older),
    how many sessions a bounded scan looked at (None: the page came from an index alone), and each
    session's lifecycle ("idle-closed", "reopened") when it has one."""

    def __init__(self, sessions: Iterable[Session] = (), *, next: Cursor | None = None,
                 searched: int | None = None, lifecycle: Mapping[tuple[str, str], str] | None = None) -> None:
        super().__init__(sessions)
        self.next = next
        self.searched = searched
        self.lifecycle = dict(lifecycle or {})


@dataclass(frozen=True)
class SessionFilter:
    """What a session listing keeps. Empty fields keep everything; all given fields must hold."""

    status: tuple[str, ...] = ()  # any of STATUSES
    version: str | None = None
    user: str | None = None
    model: str | None = None
    custom_id: str | None = None
    since_ns: int | None = None  # started at or after
    until_ns: int | None = None  # started before
    metadata: tuple[tuple[str, str], ...] = ()  # metadata KEY has this value (as text)
    has_error: bool | None = None  # a session error, or any failed turn or span
    min_cost: float | None = None
    max_cost: float | None = None
    min_turns: int | None = None
    max_turns: int | None = None
    production: bool | None = None  # True: no test case; False: an evaluation session
    q: str | None = None  # text search over the first message, the last reply and every turn's input / output
    # Current evaluations that hold, e.g. ``helpfulness<0.5`` (galtea_otel.evaluate.storage.parse_filter).
    evaluations: tuple[str, ...] = ()
    project: str | None = None  # issue 12: the project's sessions only (``serve --tokens``)
    # The raw since / until text, kept so that a URL written back says what the user wrote ("1h", not a date).
    since_text: str | None = field(default=None, compare=False)
    until_text: str | None = field(default=None, compare=False)

    @property
    def is_empty(self) -> bool:
        return self == SessionFilter()

    @property
    def scans(self) -> bool:
        """Whether some part is checked row by row (over a bounded window), not by an index."""
        return bool(self.model is not None or self.metadata or self.has_error is not None
                    or self.min_cost is not None or self.max_cost is not None or self.min_turns is not None
                    or self.max_turns is not None or self.production is not None or self.q or self.evaluations
                    or any(s in LIFECYCLE_STATUSES for s in self.status))

    def query(self) -> list[tuple[str, str]]:
        """The URL query parameters of this filter (the inverse of :func:`parse_query`)."""
        out: list[tuple[str, str]] = []
        if self.status:
            out.append(("status", ",".join(s.lower().replace("_", "-") if s in LIFECYCLE_STATUSES else s
                                           for s in self.status)))
        for name in ("project", "version", "user", "model", "custom_id"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, value))
        if self.since_ns is not None:
            out.append(("since", self.since_text or _iso(self.since_ns)))
        if self.until_ns is not None:
            out.append(("until", self.until_text or _iso(self.until_ns)))
        out.extend((f"metadata.{k}", v) for k, v in self.metadata)
        if self.has_error is not None:
            out.append(("has_error", "true" if self.has_error else "false"))
        if self.production is not None:
            out.append(("production", "true" if self.production else "false"))
        for name in ("min_cost", "max_cost", "min_turns", "max_turns"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, _number_text(value)))
        if self.q:
            out.append(("q", self.q))
        out.extend(("eval", e) for e in self.evaluations)
        return out


FILTER_PARAMS = ("project", "status", "version", "user", "model", "custom_id", "since", "until", "has_error",
                 "production", "min_cost", "max_cost", "min_turns", "max_turns", "q")


def parse_query(params: Mapping[str, Sequence[str]], *, now: datetime | None = None,
                ignore: Iterable[str] = ()) -> SessionFilter:
    """A filter from URL query parameters (``urllib.parse.parse_qs`` shape). Unknown names and bad values raise
    :class:`FilterError`; names in ``ignore`` (the page's own, like ``after``) are skipped."""
    skip = set(ignore)
    values: dict[str, Any] = {}
    metadata: list[tuple[str, str]] = []
    evaluations: list[str] = []
    for name, given in params.items():
        if name in skip:
            continue
        if not given:
            continue
        if name == "eval":  # issue 11: ?eval=helpfulness<0.5 (repeatable)
            from galtea_otel.evaluate.storage import parse_filter

            for expression in given:
                try:
                    parse_filter(expression)
                except ValueError as exc:
                    raise FilterError(f"eval: {exc}") from None
            evaluations.extend(given)
            continue
        if name.startswith("metadata."):
            key = name[len("metadata."):]
            if not _KEY.match(key):
                raise FilterError(f"not a metadata key: {key!r} (1-200 characters, no quotes or backslashes)")
            metadata.extend((key, v) for v in given)
            continue
        if name not in FILTER_PARAMS:
            known = ", ".join((*FILTER_PARAMS, "metadata.KEY"))
            raise FilterError(f"unknown filter {name!r} (known: {known})")
        if len(given) > 1:
            raise FilterError(f"filter {name!r} given {len(given)} times")
        text = given[0].strip()
        if text == "":
            continue
        values[name] = text
    flt = make_filter(now=now, metadata=metadata, **values)
    return replace(flt, evaluations=tuple(evaluations)) if evaluations else flt


def make_filter(*, project: str | None = None, status: str | Sequence[str] | None = None,
                version: str | None = None, user: str | None = None,
                model: str | None = None, custom_id: str | None = None, since: str | None = None,
                until: str | None = None, metadata: Iterable[tuple[str, str]] = (),
                has_error: str | bool | None = None, production: str | bool | None = None,
                min_cost: str | float | None = None, max_cost: str | float | None = None,
                min_turns: str | int | None = None, max_turns: str | int | None = None, q: str | None = None,
                now: datetime | None = None) -> SessionFilter:
    """A validated filter from texts (URL query values, CLI options); see :func:`parse_query`."""
    statuses: list[str] = []
    parts = status.split(",") if isinstance(status, str) else list(status or ())
    for part in parts:
        name = part.strip().upper().replace("-", "_")
        if not name:
            continue
        if name not in STATUSES:
            raise FilterError(f"unknown status {part.strip()!r} (known: {', '.join(_status_names())})")
        if name not in statuses:
            statuses.append(name)
    result = SessionFilter(
        status=tuple(statuses), version=version, user=user, model=model, custom_id=custom_id, project=project or None,
        since_ns=_time(since, "since", now) if since else None, until_ns=_time(until, "until", now) if until else None,
        since_text=since or None, until_text=until or None,
        metadata=tuple((k, str(v)) for k, v in metadata),
        has_error=_bool(has_error, "has_error"), production=_bool(production, "production"),
        min_cost=_num(min_cost, "min_cost", float), max_cost=_num(max_cost, "max_cost", float),
        min_turns=_num(min_turns, "min_turns", int), max_turns=_num(max_turns, "max_turns", int),
        q=q or None,
    )
    for key, _ in result.metadata:
        if not _KEY.match(key):
            raise FilterError(f"not a metadata key: {key!r} (1-200 characters, no quotes or backslashes)")
    if result.q is not None and len(result.q) > 500:
        raise FilterError("the search text is longer than 500 characters")
    for low, high, what in ((result.min_cost, result.max_cost, "cost"), (result.min_turns, result.max_turns, "turns"),
                            (result.since_ns, result.until_ns, "time range")):
        if low is not None and high is not None and low > high:
            raise FilterError(f"empty {what}: the lower bound is above the upper bound")
    return result


def _status_names() -> list[str]:
    return [*BASE_STATUSES, *(s.lower().replace("_", "-") for s in LIFECYCLE_STATUSES)]


def _bool(value: str | bool | None, name: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise FilterError(f"{name} must be true or false, not {value!r}")


def _num(value: Any, name: str, kind: Callable[[Any], Any]) -> Any:
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        what = "a whole number" if kind is int else "a number"
        raise FilterError(f"{name} must be {what}, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise FilterError(f"{name} must be a finite number >= 0, not {value!r}")
    return number


def _time(text: str, name: str, now: datetime | None) -> int:
    """ISO 8601 (``2026-12-01``, ``2026-12-01T10:00``, with an offset or ``Z``; naive means UTC) or an age
    (``30m``, ``2h``, ``7d``: that long ago) -> nanoseconds since the epoch."""
    value = text.strip()
    match = _RELATIVE.match(value.lower())
    if match:
        moment = (now or datetime.now(UTC)) - timedelta(**{_UNITS[match[2]]: float(match[1])})
    else:
        try:
            moment = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        except ValueError:
            raise FilterError(f"{name} must be an ISO 8601 time (2026-12-01T10:00Z) or an age (30m, 2h, 7d),"
                              f" not {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat().replace("+00:00", "Z")


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# --- SQL --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    """What differs between the stores' SQL: a case-insensitive LIKE and a metadata value as text."""

    like: str  # "LIKE" (SQLite, case-insensitive for ASCII) / "ILIKE"
    metadata_text: Callable[[str], str]  # SQL of metadata[KEY] as text, for a placeholder ``?`` holding the key
    metadata_marks: int  # how many times that SQL uses the placeholder
    # The turns' text is searched through a trigram index (PostgreSQL with pg_trgm): ask for the matching spans
    # once (an index scan), not session by session.
    text_index: bool = False


def _sqlite_metadata(placeholder: str) -> str:
    path = f"'$.\"' || {placeholder} || '\"'"
    return (f"CASE json_type(s.metadata, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
            f" ELSE CAST(json_extract(s.metadata, {path}) AS TEXT) END")


SQLITE = Dialect(like="LIKE", metadata_text=_sqlite_metadata, metadata_marks=2)
POSTGRES = Dialect(like="ILIKE", metadata_text=lambda p: f"(s.metadata::jsonb ->> {p})", metadata_marks=1)
POSTGRES_TRIGRAM = replace(POSTGRES, text_index=True)
TRIGRAM_MIN = 3  # a shorter search has no trigram to look up: the index would be read whole

_ORDER = " ORDER BY s.started_ns DESC, s.custom_id, s.version"
_SAME_SESSION = "t.custom_id = s.custom_id AND t.version = s.version AND t.project = s.project"
_IDLE_CLOSED = (f"(s.status = 'COMPLETED' AND EXISTS (SELECT 1 FROM spans t WHERE {_SAME_SESSION}"
                " AND t.session_event = 'idle' AND t.end_ns = s.ended_ns))")
_REOPENED = (f"(s.status = 'PENDING' AND EXISTS (SELECT 1 FROM spans t WHERE {_SAME_SESSION}"
             " AND (t.session_event IN ('end', 'idle') OR t.kind = 'SESSION')))")
_RAW_KEY = "s.started_ns, s.custom_id, s.version"  # the cursor of a row: its exact key, not a rounded time
LIFECYCLE_SQL = (f"CASE WHEN {_IDLE_CLOSED} THEN 'idle-closed' WHEN {_REOPENED} THEN 'reopened' END")


@dataclass
class _Where:
    parts: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)

    def add(self, sql: str, *args: Any) -> None:
        self.parts.append(sql)
        self.args.extend(args)

    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.parts)) if self.parts else ""


def _indexed(flt: SessionFilter, after: Cursor | None) -> _Where:
    where = _Where()
    base = sorted({"COMPLETED" if s == "IDLE_CLOSED" else "PENDING" if s == "REOPENED" else s
                   for s in flt.status}, key=STATUSES.index)
    if len(base) == 1:
        where.add("s.status = ?", base[0])
    elif base and len(base) < len(BASE_STATUSES):
        where.add(f"s.status IN ({', '.join('?' * len(base))})", *base)
    for column, value in (("project", flt.project), ("version", flt.version), ("user_id", flt.user),
                          ("custom_id", flt.custom_id)):
        if value is not None:
            where.add(f"s.{column} = ?", value)
    if flt.since_ns is not None:
        where.add("s.started_ns >= ?", flt.since_ns)
    if flt.until_ns is not None:
        where.add("s.started_ns < ?", flt.until_ns)
    if after is not None:
        # ``started_ns <= ?`` alone is the index range; the rest picks the rows after the cursor within it.
        where.add("s.started_ns <= ? AND (s.started_ns < ? OR s.custom_id > ? OR (s.custom_id = ? AND"
                  " s.version > ?))", after.started_ns, after.started_ns, after.custom_id, after.custom_id,
                  after.version)
    return where


def _residual(flt: SessionFilter, dialect: Dialect) -> _Where:
    where = _Where()
    if flt.model is not None:
        where.add(f"(s.model = ? OR EXISTS (SELECT 1 FROM spans t WHERE {_SAME_SESSION} AND t.kind = 'GENERATION'"
                  " AND t.model = ?))", flt.model, flt.model)
    for key, value in flt.metadata:
        where.add(f"{dialect.metadata_text('?')} = ?", *([key] * dialect.metadata_marks), value)
    if flt.has_error is not None:
        sql = f"(s.error IS NOT NULL OR EXISTS (SELECT 1 FROM spans t WHERE {_SAME_SESSION} AND t.status = 2))"
        where.add(sql if flt.has_error else f"NOT {sql}")
    for column, low, high in (("cost", flt.min_cost, flt.max_cost), ("turn_count", flt.min_turns, flt.max_turns)):
        if low is not None:
            where.add(f"s.{column} >= ?", low)
        if high is not None:
            where.add(f"s.{column} <= ?", high)
    if flt.production is not None:
        where.add("s.test_case_id IS NULL" if flt.production else "s.test_case_id IS NOT NULL")
    statuses = set(flt.status)
    if statuses & set(LIFECYCLE_STATUSES):
        wanted = [s for s in flt.status if s in BASE_STATUSES]
        options = [f"s.status = '{s}'" for s in wanted]
        if "IDLE_CLOSED" in statuses and "COMPLETED" not in statuses:
            options.append(_IDLE_CLOSED)
        if "REOPENED" in statuses and "PENDING" not in statuses:
            options.append(_REOPENED)
        where.add("(" + " OR ".join(options) + ")")
    if flt.evaluations:  # issue 11: sessions list --eval 'NAME<0.5'
        from galtea_otel.evaluate.storage import filter_sql

        conditions, values = filter_sql(flt.evaluations, "?")
        for condition in conditions:
            where.add(condition.replace("sessions.", "s."))
        where.args.extend(values)
    if flt.q:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", flt.q) + "%"
        like = f"{dialect.like} ? ESCAPE '\\'"
        if dialect.text_index and len(flt.q) >= TRIGRAM_MIN:
            turns = ("(s.custom_id, s.version) IN (SELECT t.custom_id, t.version FROM spans t WHERE"
                     f" t.kind = 'GENERATION' AND (t.input {like} OR t.output {like}))")
        else:
            turns = (f"EXISTS (SELECT 1 FROM spans t WHERE {_SAME_SESSION} AND t.kind = 'GENERATION'"
                     f" AND (t.input {like} OR t.output {like}))")
        where.add(f"(s.first_input {like} OR s.last_output {like} OR {turns})", pattern, pattern, pattern, pattern)
    return where


@dataclass(frozen=True)
class PageQuery:
    """The SQL of one page, with ``?`` placeholders. ``rows`` returns the page's sessions (its columns, then
    the lifecycle) with one more than the page when there is more; ``window`` (only for a scanning filter) the
    bounded window's last key and size."""

    rows: str
    rows_args: list[Any]
    window: str | None
    window_args: list[Any]


def page_query(columns: Sequence[str], flt: SessionFilter, after: Cursor | None, limit: int, dialect: Dialect,
               window: int = SCAN_WINDOW) -> PageQuery:
    cols = ", ".join(f"s.{c}" for c in columns)
    indexed = _indexed(flt, after)
    if not flt.scans:
        # LIMIT as a literal (an int): a prepared statement's generic plan, not knowing it is small, may pick a
        # full scan and a sort over the index range (PostgreSQL does, after five runs).
        sql = (f"SELECT {cols}, NULL, {_RAW_KEY} FROM sessions s{indexed.sql()}{_ORDER}"
               f" LIMIT {int(limit) + 1}")
        return PageQuery(sql, list(indexed.args), None, [])
    residual = _residual(flt, dialect)
    win = f"WITH w AS (SELECT s.* FROM sessions s{indexed.sql()}{_ORDER} LIMIT {int(window)}) "
    sql = win + f"SELECT {cols}, NULL, {_RAW_KEY} FROM w s{residual.sql()}{_ORDER} LIMIT {int(limit) + 1}"
    end = (f"WITH w AS (SELECT s.started_ns, s.custom_id, s.version FROM sessions s{indexed.sql()}{_ORDER}"
           f" LIMIT {int(window)}) SELECT s.started_ns, s.custom_id, s.version, (SELECT count(*) FROM w) FROM w s"
           " ORDER BY s.started_ns, s.custom_id DESC, s.version DESC LIMIT 1")
    return PageQuery(sql, [*indexed.args, *residual.args], end, list(indexed.args))


def run_page(query: PageQuery, limit: int, fetch: Callable[[str, list[Any]], Sequence[Sequence[Any]]],
             to_session: Callable[[Sequence[Any]], Session], window: int = SCAN_WINDOW) -> SessionPage:
    """Run a :class:`PageQuery` with ``fetch(sql, args)`` (the store's, placeholders already its own)."""
    rows = list(fetch(query.rows, query.rows_args))
    page = rows[:limit]
    sessions = [to_session(r[:-4]) for r in page]
    lifecycle: dict[tuple[str, str], str] = {}
    ids = sorted({s.custom_id for s in sessions})
    shown = {(s.custom_id, s.version, s.project) for s in sessions}
    for start in range(0, len(ids), 500):  # the page's lifecycles: a second query, by primary key
        chunk = ids[start:start + 500]
        sql = (f"SELECT s.custom_id, s.version, s.project, {LIFECYCLE_SQL} FROM sessions s"
               f" WHERE s.custom_id IN ({', '.join('?' * len(chunk))})")
        # Only the page's own sessions (another project may hold the same custom id and version).
        lifecycle.update({(r[0], r[1]): r[3] for r in fetch(sql, chunk) if r[3] and (r[0], r[1], r[2]) in shown})
    more = len(rows) > limit
    last = Cursor(int(page[-1][-3] or 0), page[-1][-2], page[-1][-1]) if page else None
    if query.window is None or more:
        return SessionPage(sessions, next=last if more else None, lifecycle=lifecycle)
    end = list(fetch(query.window, query.window_args))
    if not end:
        return SessionPage(sessions, next=None, searched=0, lifecycle=lifecycle)
    started, custom_id, version, count = end[0]
    full = int(count) >= window
    return SessionPage(sessions, next=Cursor(int(started or 0), custom_id, version) if full else None,
                       searched=int(count), lifecycle=lifecycle)


def legacy_filter(flt: SessionFilter | None, status: str | None, version: str | None,
                  evaluations: Sequence[str] = ()) -> SessionFilter:
    """The older ``list_sessions(status=..., version=..., evaluations=...)`` keywords folded into a filter."""
    result = flt or SessionFilter()
    if evaluations:
        result = replace(result, evaluations=(*result.evaluations, *evaluations))
    if status:
        result = replace(result, status=(status.upper(),))
    if version:
        result = replace(result, version=version)
    return result


