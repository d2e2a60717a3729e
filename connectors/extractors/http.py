"""A paginated JSON API over HTTP(S), read with ``requests``.

One page at a time: the records sit at ``records_path`` in the body (dotted path; empty: the
body is the array). Pagination styles: a next link in the body, the ``Link`` header
(``rel="next"``), page numbers, offset/limit, and a cursor token from the body. Requests that
get 429, a 5xx or a network error are retried with exponential backoff, honouring
``Retry-After``; other errors stop the sync naming the page.

Incremental syncs pass the saved cursor as the ``cursor_param`` query parameter; the SDK
also drops records below the saved cursor, so an API that ignores the parameter still gives
a correct (if slower) incremental sync. API order is unknown, so the only checkpoint is the
final state at END.

The bearer token, the configured headers and the URL's user:password are credentials: they
are sent to the origin (scheme, host, port) of the configured ``url`` only, never to a next
link or a redirect elsewhere (http_session.py), and never logged; logs and errors show URLs
without their userinfo and query string.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests

from connectors.extractors.http_session import OriginBoundSession, credentials_of
from connectors.sdk import ConfigError, ConnectorError, Extractor, ReadProgress, RecordStream
from connectors.sdk.values import big_number_in, loads_exact

log = logging.getLogger("connectors.http")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504}) | frozenset(range(520, 530))
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 300.0  # a server asking for longer than this is treated as down
# The record count many APIs put in a header; ``total_path`` names one in the body instead.
TOTAL_COUNT_HEADER = "X-Total-Count"
# A bound on any pagination, so that an API that pages for ever (distinct links, new pages
# each time) fails in hours of work at worst, never in the 6 h timeout. Raise it for bigger APIs.
DEFAULT_MAX_PAGES = 100_000


def without_query(url: str) -> str:
    """The URL for logs and errors: query strings may hold API keys, userinfo a password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def dig(body: Any, path: str) -> Any:
    """The value at a dotted path (``data.items``); None when a step is missing."""
    value = body
    for step in filter(None, path.split(".")):
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def retry_after_seconds(header: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class PageRequest:
    """What to fetch next: a URL and its own query parameters (None: the URL is complete)."""

    url: str
    params: dict[str, Any] | None


@dataclass
class Page:
    number: int
    url: str
    records: list[Any]
    body: Any
    response: requests.Response
    exact: bool = False  # parsed by the exact (slow) path: may hold Decimal and big integers


def request_key(request: PageRequest) -> str:
    """The request as the server sees it: the URL with its parameters merged in."""
    prepared = requests.Request("GET", request.url, params=request.params).prepare()
    return prepared.url or request.url


class PaginationGuard:
    """Stops a pagination that does not advance, instead of looping until the timeout:
    a next request that was made before (a next link or cursor token that never changes),
    or, for page_number/offset_limit, a page identical to the one before (an API that
    ignores the page or offset parameter)."""

    def __init__(self, style: str, settings: dict[str, Any]) -> None:
        self.style = style
        self.settings = settings
        self.seen: dict[str, int] = {}  # request -> the page number it fetched
        self.previous_body: bytes | None = None

    def request(self, request: PageRequest, number: int) -> None:
        key = request_key(request)
        first = self.seen.get(key)
        if first is not None:
            raise ConnectorError(
                f"page {number}: the pagination does not advance: the next request is the one "
                f"of page {first} again ({without_query(key)}, {self._advanced_by()}); check "
                "the pagination settings, or the API",
                {"page": number},
            )
        self.seen[key] = number

    def page(self, page: Page) -> None:
        if self.style not in ("page_number", "offset_limit"):
            return
        body = page.response.content
        if body == self.previous_body and page.records:
            raise ConnectorError(
                f"page {page.number}: the pagination does not advance: the API sent the same "
                f"records as for page {page.number - 1} ({self._advanced_by()}); it may ignore "
                "that parameter: check the pagination settings",
                {"page": page.number},
            )
        self.previous_body = body

    def _advanced_by(self) -> str:
        settings = self.settings
        return {
            "next_link_body": f"next link at {settings.get('next_link_path', 'next')!r}",
            "link_header": "next link in the Link header",
            "cursor_token": f"token at {settings.get('token_path', 'next_cursor')!r} sent as "
            f"{settings.get('token_param', 'cursor')!r}",
            "page_number": f"page parameter {settings.get('page_param', 'page')!r}",
            "offset_limit": f"offset parameter {settings.get('offset_param', 'offset')!r}",
        }.get(self.style, "pagination type " + self.style)


class HttpExtractor(Extractor):
    stream_name = "http"

    def __init__(self, config: dict[str, Any], context: Any) -> None:
        super().__init__(config, context)
        self.pagination: dict[str, Any] = {"type": "none", **(config.get("pagination") or {})}
        self.page_number = 0
        self.records_read = 0
        self.records_expected: int | None = None  # the total the API reports, if any
        # Credentials reach the configured URL's origin only (see http_session).
        self.first_url, credentials = credentials_of(config)
        self.session = OriginBoundSession(self.first_url, credentials)
        self.session.headers["Accept"] = "application/json"
        cursor_param = config.get("cursor_param")
        if cursor_param and not context.sync.cursor_field and context.sync.mode != "full_refresh":
            log.warning("cursor_param is set but the connection has no cursor_field")

    def check(self) -> None:
        page = self._fetch(PageRequest(self.first_url, self._first_params()), number=1)
        self._records_of(page.body, 1)

    def position(self) -> dict[str, Any] | None:
        return {"page": self.page_number} if self.page_number else None

    def progress(self) -> ReadProgress | None:
        if self.records_expected is None:
            return None
        total = max(self.records_expected, self.records_read)
        return ReadProgress(done=self.records_read, total=total, unit="records")

    def close(self) -> None:
        self.session.close()

    # --- reading ---------------------------------------------------------------------------
    def read(self, out: RecordStream) -> None:
        for page in self._pages():
            if page.number == 1:
                self.records_expected = self._reported_total(page)
            self.records_read += len(page.records)
            for index, record in enumerate(page.records):
                nested = page.exact and isinstance(record, dict) and big_number_in(
                    [v for v in record.values() if isinstance(v, dict | list)]
                )
                if nested:
                    out.reject(
                        f"the number {nested} inside a JSON value cannot be kept exactly "
                        "(nested numbers travel as 64-bit floats and integers)",
                        {"page": page.number, "record": index + 1},
                        raw=None,
                    )
                elif isinstance(record, dict):
                    out.write_record(record)
                else:
                    out.reject(
                        f"a record must be a JSON object, not {type(record).__name__}",
                        {"page": page.number, "record": index + 1},
                        raw=record,
                    )

    def _reported_total(self, page: Page) -> int | None:
        """The record count the API gives on its first page (``total_path`` in the body, or
        the X-Total-Count header), for the percentage shown; None when it gives none."""
        path = self.config.get("total_path")
        value = dig(page.body, path) if path else page.response.headers.get(TOTAL_COUNT_HEADER)
        try:
            total = int(value) if value is not None and not isinstance(value, bool) else None
        except (TypeError, ValueError):
            return None
        return total if total is not None and total >= 0 else None

    def _pages(self) -> Iterator[Page]:
        style = self.pagination["type"]
        max_pages = self.pagination.get("max_pages") or DEFAULT_MAX_PAGES
        request: PageRequest | None = PageRequest(self.first_url, self._first_params())
        guard = PaginationGuard(style, self.pagination)
        number = 0
        while request is not None:
            number += 1
            guard.request(request, number)
            page = self._fetch(request, number)
            guard.page(page)
            yield page
            if style == "none":
                return
            request = self._next_request(style, page, request)
            if request is not None and number >= max_pages:
                # Stopping here would pass a partial read off as the whole source.
                raise ConnectorError(
                    f"page {number}: the API still has a next page after max_pages "
                    f"({max_pages}); the read would be incomplete, so the sync stops: raise "
                    "pagination.max_pages if the API is that large",
                    {"page": number},
                )

    def _first_params(self) -> dict[str, Any]:
        params = dict(self.config.get("params") or {})
        cursor_param = self.config.get("cursor_param")
        start = self.context.start_cursor
        if cursor_param and start is not None:
            params[cursor_param] = start
        style = self.pagination["type"]
        size = self.pagination.get("page_size", 100)
        if style == "page_number":
            params[self.pagination.get("page_param", "page")] = self.pagination.get(
                "start_page", 1
            )
            if self.pagination.get("page_size_param"):
                params[self.pagination["page_size_param"]] = size
        elif style == "offset_limit":
            params[self.pagination.get("offset_param", "offset")] = 0
            params[self.pagination.get("limit_param", "limit")] = size
        return params

    def _next_request(self, style: str, page: Page, current: PageRequest) -> PageRequest | None:
        settings = self.pagination
        if style == "next_link_body":
            link = dig(page.body, settings.get("next_link_path", "next"))
            return PageRequest(urljoin(page.url, link), None) if link else None
        if style == "link_header":
            link = page.response.links.get("next", {}).get("url")
            return PageRequest(urljoin(page.url, link), None) if link else None
        if style == "cursor_token":
            token = dig(page.body, settings.get("token_path", "next_cursor"))
            if token in (None, "") or not page.records:
                return None
            params = {**(current.params or {}), settings.get("token_param", "cursor"): token}
            return PageRequest(current.url, params)
        # page_number and offset_limit: a short or empty page is the last one.
        size = settings.get("page_size", 100)
        params = dict(current.params or {})
        if style == "page_number":
            if not page.records or (settings.get("page_size_param") and len(page.records) < size):
                return None
            name = settings.get("page_param", "page")
            params[name] = int(params[name]) + 1
            return PageRequest(current.url, params)
        if style == "offset_limit":
            if len(page.records) < size:
                return None
            name = settings.get("offset_param", "offset")
            params[name] = int(params[name]) + len(page.records)
            return PageRequest(current.url, params)
        raise ConfigError(f"unknown pagination type {style!r}")

    # --- one page, with retries ----------------------------------------------------------
    def _fetch(self, request: PageRequest, number: int) -> Page:
        self.page_number = number
        response = self._get_with_retries(request, number)
        try:
            # Not response.json(): it makes floats of numbers a float cannot hold (1e400 is
            # inf, then null) and accepts NaN. Numbers are kept exactly (Decimal) instead.
            body, exact = loads_exact(response.content)
        except ValueError:
            kind = response.headers.get("Content-Type", "?")
            raise ConnectorError(
                f"page {number} ({without_query(response.url)}) is not JSON ({kind})",
                {"page": number},
            ) from None
        return Page(number, response.url, self._records_of(body, number), body, response, exact)

    def _records_of(self, body: Any, number: int) -> list[Any]:
        path = self.config["records_path"]
        records = dig(body, path) if path else body
        if records is None and path:
            return []  # an API that leaves the key out of an empty page
        if not isinstance(records, list):
            where = f"at {path!r}" if path else "(the body)"
            raise ConnectorError(
                f"page {number}: the records {where} are not a JSON array", {"page": number}
            )
        return records

    def _get_with_retries(self, request: PageRequest, number: int) -> requests.Response:
        retries = self.config["max_retries"]
        attempt = 0
        while True:
            problem, wait = self._attempt(request, number)
            if isinstance(problem, requests.Response):
                return problem
            if attempt >= retries:
                raise ConnectorError(
                    f"page {number} ({without_query(request.url)}): {problem} "
                    f"(after {attempt + 1} attempts)",
                    {"page": number},
                )
            delay = wait if wait is not None else self._backoff(attempt)
            log.info("page %d: %s; retrying in %.1fs", number, problem, delay)
            time.sleep(delay)
            attempt += 1

    def _attempt(
        self, request: PageRequest, number: int
    ) -> tuple[requests.Response | str, float | None]:
        """One request: the response when usable, else why it should be retried and the
        wait the server asked for. Errors that a retry cannot fix raise at once."""
        try:
            response = self.session.get_with_credentials(
                request.url, params=request.params, timeout=self.config["timeout"]
            )
        except requests.Timeout:
            return f"no answer within {self.config['timeout']}s", None
        except requests.ConnectionError as exc:
            return f"connection failed ({type(exc).__name__})", None
        except requests.RequestException as exc:
            raise ConnectorError(
                f"page {number}: invalid request ({type(exc).__name__})", {"page": number}
            ) from None
        if response.status_code in RETRY_STATUSES:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:
                wait = MAX_RETRY_AFTER_SECONDS
            return f"HTTP {response.status_code}", wait
        if response.status_code >= 400:
            raise ConnectorError(
                f"page {number} ({without_query(response.url)}): HTTP {response.status_code} "
                f"{response.reason}: {response.text[:200]}",
                {"page": number},
            )
        return response, None

    @staticmethod
    def _backoff(attempt: int) -> float:
        delay = min(FIRST_BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
        return delay * random.uniform(0.8, 1.2)  # jitter: clients retrying together spread out
