"""URLs may carry secrets (credentials, token parameters): they are split off for auth and
never shown; a URL whose credentials cannot be told from its host is refused."""

from __future__ import annotations

import pytest

from wheeltasks.urls import ambiguity, http_url_problem, join, redact, secret_parameters, split_credentials


@pytest.mark.parametrize(
    ("url", "bare", "credentials", "shown"),
    [
        ("https://idx.example/simple/", "https://idx.example/simple/", None, "https://idx.example/simple/"),
        ("https://u:p%40ss@idx.example:8443/simple", "https://idx.example:8443/simple", ("u", "p@ss"),
         "https://***@idx.example:8443/simple"),
        ("http://tok@[::1]:3141/root/", "http://[::1]:3141/root/", ("tok", ""), "http://***@[::1]:3141/root/"),
        ("http://:secret@127.0.0.1/s/", "http://127.0.0.1/s/", ("", "secret"), "http://***@127.0.0.1/s/"),
        # An unencoded "@" in the password: urllib and requests both split at the last "@".
        ("http://me:p@ss@127.0.0.1/simple/", "http://127.0.0.1/simple/", ("me", "p@ss"), "http://***@127.0.0.1/simple/"),
        ("http://me:a@b@c@127.0.0.1/s/", "http://127.0.0.1/s/", ("me", "a@b@c"), "http://***@127.0.0.1/s/"),
    ],
)
def test_split_and_redact(url: str, bare: str, credentials: tuple[str, str] | None, shown: str) -> None:
    assert split_credentials(url) == (bare, credentials)
    assert redact(url) == shown
    if credentials:
        assert credentials[1] == "" or credentials[1] not in redact(url)


SECRET = "Zq81sec"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # The password holds "/", "?" or "#": to urllib and requests the host is "me".
        (f"http://me:{SECRET}/ret@127.0.0.1:8080/simple/", "http://***@127.0.0.1:8080/simple/"),
        (f"http://me:{SECRET}?x@127.0.0.1/simple/", "http://***@127.0.0.1/simple/"),
        (f"http://me:{SECRET}#x@127.0.0.1/simple/", "http://***@127.0.0.1/simple/"),
        (f"http://{SECRET}/x@127.0.0.1/simple/", "http://***@127.0.0.1/simple/"),
        # Token parameters, in the query and in the fragment.
        (f"https://h/simple/?token={SECRET}", "https://h/simple/?token=***"),
        (f"https://h/s/?a=1&access_token={SECRET}&b=2", "https://h/s/?a=1&access_token=***&b=2"),
        (f"https://h/blob?X-Amz-Signature={SECRET}&X-Amz-Credential={SECRET}&X-Amz-Date=1",
         "https://h/blob?X-Amz-Signature=***&X-Amz-Credential=***&X-Amz-Date=1"),
        (f"https://h/b?sig={SECRET};se=2030", "https://h/b?sig=***;se=2030"),
        (f"https://h/b?api-key={SECRET}", "https://h/b?api-key=***"),
        (f"https://h/b?client_secret={SECRET}", "https://h/b?client_secret=***"),
        (f"https://h/b?password={SECRET}", "https://h/b?password=***"),
        (f"https://h/cb#access_token={SECRET}&state=1", "https://h/cb#access_token=***&state=1"),
        (f"https://u:{SECRET}@h/b?auth={SECRET}", "https://***@h/b?auth=***"),
        # Whatever urllib makes of it, the text is still redacted.
        (f"http://u:{SECRET}@[::1/simple/", "http://***@[::1/simple/"),
        (f"u:{SECRET}@host/simple/", "***@host/simple/"),
    ],
)
def test_every_secret_is_redacted(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert SECRET not in redact(url)


@pytest.mark.parametrize("url", ["https://h/s?page=2&n=100", "https://h/s?keyword=x", "https://h/s?author=me"])
def test_other_parameters_are_kept(url: str) -> None:
    assert redact(url) == url
    assert secret_parameters(url) == []


def test_secret_parameters_are_named() -> None:
    assert secret_parameters(f"https://h/s?token={SECRET}&n=1#sig=x") == ["token", "sig"]


@pytest.mark.parametrize(
    "url",
    [f"http://me:{SECRET}/ret@127.0.0.1/s/", f"http://{SECRET}?x@h/s/", f"http://me:{SECRET}#x@h/s/"],
)
def test_credentials_that_run_past_the_host_are_ambiguous(url: str) -> None:
    reason = ambiguity(url)
    assert "percent-encode" in reason and SECRET not in reason
    assert http_url_problem(url) == reason


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://[::1/simple/", "cannot be parsed (Invalid IPv6 URL)"),
        ("http://127.0.0.1:99999/", "invalid port"),
        ("http://127.0.0.1:sec/", "invalid port"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("http:///nohost", "not an http(s) URL"),
        ("http://h/a\r\nX-Injected: 1", "control character"),
        ("http://h/a b", "control character or a space"),
    ],
)
def test_http_url_problems(url: str, problem: str) -> None:
    assert problem in http_url_problem(url)


def test_join_checks_what_a_server_sent() -> None:
    assert join("http://h:5000/v2/r/tags/list", "/v2/r/tags/list?last=a") == "http://h:5000/v2/r/tags/list?last=a"
    for bad in ("http://[::1/x", "file:///etc/passwd", "http://h/\r\nX: 1"):
        with pytest.raises(ValueError):
            join("http://h/", bad)
