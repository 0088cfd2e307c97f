"""Index URLs may carry credentials: they are split off for auth and never shown."""

from __future__ import annotations

import pytest

from wheeltasks.urls import redact, split_credentials


@pytest.mark.parametrize(
    ("url", "bare", "credentials", "shown"),
    [
        ("https://idx.example/simple/", "https://idx.example/simple/", None, "https://idx.example/simple/"),
        ("https://u:p%40ss@idx.example:8443/simple", "https://idx.example:8443/simple", ("u", "p@ss"),
         "https://***@idx.example:8443/simple"),
        ("http://tok@[::1]:3141/root/", "http://[::1]:3141/root/", ("tok", ""), "http://***@[::1]:3141/root/"),
        ("http://:secret@127.0.0.1/s/", "http://127.0.0.1/s/", ("", "secret"), "http://***@127.0.0.1/s/"),
    ],
)
def test_split_and_redact(url: str, bare: str, credentials: tuple[str, str] | None, shown: str) -> None:
    assert split_credentials(url) == (bare, credentials)
    assert redact(url) == shown
    if credentials:
        assert credentials[1] == "" or credentials[1] not in redact(url)
