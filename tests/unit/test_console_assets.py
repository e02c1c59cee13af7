"""The console's files: the vendored Mermaid build is the pinned one, and the page and
its modules hold together (no inline script, every reference resolves)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from statefleet.api.console import CONSOLE_DIR, CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[2]
VENDOR = CONSOLE_DIR / "assets" / "vendor"


def test_the_committed_mermaid_build_is_the_pinned_version() -> None:
    record = json.loads((VENDOR / "mermaid.min.js.json").read_text())
    pinned = json.loads((ROOT / "console" / "package.json").read_text())["dependencies"]
    lock = json.loads((ROOT / "console" / "package-lock.json").read_text())["packages"]
    assert record["package"] == "mermaid"
    assert record["version"] == pinned["mermaid"] == lock["node_modules/mermaid"]["version"]
    built = (VENDOR / "mermaid.min.js").read_bytes()
    assert hashlib.sha256(built).hexdigest() == record["sha256"]
    # The build carries its own version (mermaid.version()), so a swapped file shows.
    assert f'"{record["version"]}"'.encode() in built
    assert (VENDOR / "mermaid.LICENSE").read_text().startswith("The MIT License")


def test_the_page_has_no_inline_script_and_every_reference_resolves() -> None:
    page = (CONSOLE_DIR / "index.html").read_text()
    for match in re.finditer(r"<script([^>]*)>(.*?)</script>", page, re.S):
        assert 'src="' in match[1], match[0]
        assert not match[2].strip(), match[0]
    assert not re.search(r"\son[a-z]+=", page), "no inline event handlers"
    for reference in re.findall(r'(?:src|href)="(/ui/assets/[^"]+)"', page):
        assert (CONSOLE_DIR / reference.removeprefix("/ui/")).is_file(), reference
    for module in (CONSOLE_DIR / "assets").glob("*.js"):
        text = module.read_text()
        for imported in re.findall(r'from "\./([^"]+)"', text):
            assert (module.parent / imported).is_file(), (module.name, imported)
        assert "eval(" not in text, module.name
        assert "new Function" not in text, module.name
        assert ".innerHTML" not in text or module.name == "diagram.js", module.name


def test_docs_show_every_screenshot_and_the_policy_served() -> None:
    docs = (ROOT / "docs" / "console.md").read_text()
    assert f"`{CONTENT_SECURITY_POLICY}`" in docs
    shots = sorted(p.name for p in (ROOT / "docs" / "console").glob("*.png"))
    assert shots, "tests/e2e/console_screenshots.py writes them"
    for name in shots:
        assert f"(console/{name})" in docs, name
