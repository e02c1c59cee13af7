"""What counts as a plain e-mail address: one that goes on an SMTP command line as it is.

A dot-atom local part (RFC 5322 ``atext`` in dot-separated runs) and a domain of
letters, digits and hyphens: no display name, no quoting, no comment, nothing that
could smuggle a parameter onto the line. The ``EMAIL`` handler sends such addresses
without aiosmtplib's parsing (``engine/handlers/smtp.py``) and the mail sink reads them
without aiosmtpd's (``statefleet/mailsink.py``); one pattern, so both sides agree.
It lives outside ``engine.handlers`` so that the sink's process does not import the
handlers package (about 145 ms at start-up) for a regular expression.
"""

from __future__ import annotations

__all__ = ["PLAIN_ADDRESS"]

_ATEXT = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = "[A-Za-z0-9-]+"
#: The pattern (a string, for callers to embed in their own).
PLAIN_ADDRESS = rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*"
