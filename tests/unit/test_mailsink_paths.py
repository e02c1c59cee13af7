"""The mail sink's fast path for plain MAIL FROM / RCPT TO paths gives what aiosmtpd gives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from statefleet.mailsink import _PLAIN_PATH, MailSink, sink_smtp

ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
_atom = st.text(st.sampled_from(ATEXT), min_size=1, max_size=8)
_label = st.text(st.sampled_from("abcxyz0189-"), min_size=1, max_size=8)
_local = st.lists(_atom, min_size=1, max_size=3).map(".".join)
_domain = st.lists(_label, min_size=1, max_size=3).map(".".join)
_params = st.sampled_from(["", "SIZE=1234", "BODY=8BITMIME", "SIZE=1 BODY=7BIT", "SMTPUTF8"])
_space = st.sampled_from(["", " ", "  ", "\t"])
#: Paths the fast path leaves to aiosmtpd, and some it takes, side by side.
ODD = [
    "",
    "<>",
    "<a@b.c>",
    "<a@b.c>SIZE=1",
    "<a@b.c> (comment) SIZE=1",
    '<"quoted local"@b.c>',
    "<@route:a@b.c>",
    "a@b.c",
    "<a..b@c.d>",
    "<.a@b.c>",
    "<a@[127.0.0.1]>",
    "<" + "x" * 70 + "@b.c>",
    "<a@b.c> SIZE=1 ",
]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Any, Any]]:
    """The sink's SMTP and aiosmtpd's, never connected (without a loop, each makes one)."""
    loop = asyncio.new_event_loop()
    try:
        yield sink_smtp()(MailSink(), loop=loop), SMTP(MailSink(), loop=loop)
    finally:
        loop.close()


@settings(max_examples=500, deadline=None)
@given(before=_space, local=_local, domain=_domain, between=_space.filter(bool), params=_params)
def test_plain_paths_parse_as_aiosmtpd_parses_them(
    servers: tuple[Any, Any], before: str, local: str, domain: str, between: str, params: str
) -> None:
    fast, slow = servers
    arg = f"{before}<{local}@{domain}>" + (f"{between}{params}" if params else "")
    assert _PLAIN_PATH.fullmatch(arg)  # the fast path's, not aiosmtpd's
    assert fast._getaddr(arg) == slow._getaddr(arg)


def test_every_other_path_is_left_to_aiosmtpd(servers: tuple[Any, Any]) -> None:
    fast, slow = servers
    for arg in ODD:
        assert fast._getaddr(arg) == slow._getaddr(arg), arg
