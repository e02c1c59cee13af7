"""Writes the screenshots of docs/console.md: ``python tests/e2e/console_screenshots.py``.

The same visit as tests/e2e/test_console.py (``console_support.walk_through``), in the
same headless Chromium against a fresh ``statefleet up``, with each main page saved to
docs/console/<page>.png. Rerun it when the console's look changes, and commit the PNGs.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

from console_support import browser, running_up, walk_through

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "console"


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as workdir,
        running_up(pathlib.Path(workdir)) as stack,
        browser() as driver,
    ):
        walk_through(driver, stack, shots=DOCS)
    for shot in sorted(DOCS.glob("*.png")):
        print(shot.relative_to(DOCS.parents[1]))


if __name__ == "__main__":
    sys.exit(main())
