"""Copy the pinned npm builds the console ships into statefleet/console/assets/vendor/.

Run by ``make console-assets`` after ``npm ci`` in this folder. The copies are committed,
so ``pip install`` needs no Node; next to each goes a record of the version and the
sha256 it was copied with, which tests/unit/test_console_assets.py checks against
package-lock.json and the committed file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE.parent / "statefleet" / "console" / "assets" / "vendor"


def main() -> None:
    package = HERE / "node_modules" / "mermaid"
    version = json.loads((package / "package.json").read_text())["version"]
    VENDOR.mkdir(parents=True, exist_ok=True)
    target = VENDOR / "mermaid.min.js"
    shutil.copyfile(package / "dist" / "mermaid.min.js", target)
    shutil.copyfile(package / "LICENSE", VENDOR / "mermaid.LICENSE")
    record = {
        "package": "mermaid",
        "version": version,
        "file": "dist/mermaid.min.js",
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
    }
    (VENDOR / "mermaid.min.js.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"mermaid {version}: {target} ({target.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
