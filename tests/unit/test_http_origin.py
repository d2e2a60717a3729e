"""The http extractor's credentials go only where requests really connects to the configured
origin: a property over URLs built from the pieces that confuse URL parsers (userinfo, case,
trailing dots, default and odd ports, backslashes, fragments and queries holding '@')."""

from __future__ import annotations

import requests
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from connectors.extractors.http_session import OriginBoundSession, credentials_of, origin

HOME = "https://api.example.com/v1/items"
HOME_TARGET = ("https", "api.example.com", 443)

schemes = st.sampled_from(["https", "HTTPS", "http", "ftp", "", "https:"])
userinfos = st.sampled_from(
    ["", "u@", "u:p@", "api.example.com@", "evil.test\\@", "u:p@evil.test@", "%40@"]
)
hosts = st.sampled_from(
    ["api.example.com", "API.Example.COM", "api.example.com.", "evil.test", "127.0.0.2",
     "api.example.com.evil.test", "evil.test#api.example.com", "[::1]", "api.exam%70le.com"]
)
ports = st.sampled_from(["", ":443", ":80", ":8443", ":0443", ":65536", ":x"])
tails = st.one_of(
    st.sampled_from(["/", "/p?x=1", "#@evil.test/", "?@evil.test", "\\@evil.test/",
                     "/@evil.test", "%2F@evil.test/", "@evil.test"]),
    st.text(max_size=12),
)


def connects_to(url: str) -> tuple[str, str, int] | None:
    """Where requests' connection pool would connect for this URL (None: it would not)."""
    try:
        prepared = requests.Request("GET", url).prepare()
        pool = urllib3.PoolManager().connection_from_url(prepared.url)
    except Exception:
        return None
    return (pool.scheme, pool.host.lower().rstrip("."), pool.port)


@given(schemes, userinfos, hosts, ports, tails)
def test_credentials_are_sent_only_where_requests_connects_to_the_origin(
    scheme, userinfo, host, port, tail
):
    url = f"{scheme}://{userinfo}{host}{port}{tail}"
    session = OriginBoundSession(HOME, {"X-Api-Key": "k", "Authorization": "Bearer t"})
    if session.headers_for(url):
        assert connects_to(url) == HOME_TARGET, url


@given(st.text(max_size=40))
def test_any_text_is_either_the_origin_or_gets_nothing(text):
    session = OriginBoundSession(HOME, {"X-Api-Key": "k"})
    if session.headers_for(text):
        assert connects_to(text) == HOME_TARGET, text


def test_the_url_userinfo_becomes_basic_auth_for_the_origin_and_leaves_the_url():
    url, credentials = credentials_of({"url": "https://al%40ice:p%3Aw@api.example.com/x"})
    assert url == "https://api.example.com/x"
    assert credentials == {"Authorization": requests.auth._basic_auth_str("al@ice", "p:w")}
    assert origin(url) == HOME_TARGET


def test_a_bearer_token_wins_over_userinfo_and_headers_are_kept():
    _, credentials = credentials_of(
        {"url": "https://u:p@api.example.com/", "bearer_token": "t", "headers": {"X-A": "1"}}
    )
    assert credentials == {"X-A": "1", "Authorization": "Bearer t"}
