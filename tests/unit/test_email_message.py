"""How an EMAIL task's message is built: the fast path only where it is safe."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from statefleet.engine.handlers.builtin import _message

HEADERS = {
    "From": "engine@example.com",
    "To": "ada@example.com, bob@example.com",
    "Cc": "",
    "Reply-To": "",
    "Subject": "Hello",
    "Message-ID": "<" + "x" * 90 + "@example.com>",
}


def parsed(raw: bytes) -> object:
    return message_from_bytes(raw, policy=policy.default)


def test_plain_ascii_is_written_unfolded_with_crlf_and_no_empty_headers() -> None:
    raw = _message(HEADERS, "hi there", None)
    message = parsed(raw)
    assert b"\r\nMessage-ID: <" + b"x" * 90 + b"@example.com>\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert message["Subject"] == "Hello"  # type: ignore[index]
    assert message["Cc"] is None  # type: ignore[index]
    assert message.get_content().strip() == "hi there"  # type: ignore[attr-defined]


def test_non_ascii_subject_is_encoded_by_the_full_policy() -> None:
    raw = _message({**HEADERS, "Subject": "Grüße"}, "straße", None)
    assert b"Gr\xc3\xbc" not in raw.split(b"\r\n\r\n")[0]  # encoded, not raw UTF-8
    message = parsed(raw)
    assert message["Subject"] == "Grüße"  # type: ignore[index]
    assert message.get_content().strip() == "straße"  # type: ignore[attr-defined]


def test_a_line_break_in_a_header_is_refused_not_injected() -> None:
    with pytest.raises(ValueError, match=r"linefeed|carriage"):
        _message({**HEADERS, "Subject": "Hi\r\nBcc: eve@example.com"}, "x", None)


def test_an_html_part_makes_a_multipart_alternative() -> None:
    message = parsed(_message(HEADERS, "text", "<p>html</p>"))
    assert message.get_content_type() == "multipart/alternative"  # type: ignore[attr-defined]
