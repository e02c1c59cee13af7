"""How an EMAIL task's message is built: the fast path only where it is safe."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.mime.text import MIMEText

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statefleet.engine.handlers.builtin import _message, _plain_ascii

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


# The fast path for printable-ASCII headers and an ASCII text writes by hand what MIMEText
# writes: the same bytes, on whatever headers and text it accepts.
_names = st.sampled_from(["From", "To", "Cc", "Reply-To", "Subject", "Message-ID"])
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)
_ascii_text = st.text(st.characters(max_codepoint=0x7F, blacklist_characters="\r"), max_size=300)


def _mimetext(headers: dict[str, str], text: str) -> bytes:
    message = MIMEText(text, "plain", "us-ascii")
    for name, value in headers.items():
        message[name] = value
    return message.as_bytes(policy=policy.compat32.clone(linesep="\r\n", max_line_length=None))


@settings(max_examples=400, deadline=None)
@given(headers=st.dictionaries(_names, _printable.filter(bool), min_size=1), text=_ascii_text)
def test_the_plain_ascii_path_writes_what_mimetext_writes(
    headers: dict[str, str], text: str
) -> None:
    assert _plain_ascii(headers, text) == _mimetext(headers, text)
    assert _message(headers, text, None) == _mimetext(headers, text)


def test_text_with_carriage_returns_or_non_ascii_takes_the_library_path() -> None:
    # Lone CRs are line breaks to the generator: the fast path leaves them to it.
    assert _message(HEADERS, "a\rb\r\nc", None).endswith(b"\r\n\r\na\r\nb\r\nc")
    assert b'charset="utf-8"' in _message(HEADERS, "caf\u00e9", None)
