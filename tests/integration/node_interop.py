"""Node for the interop tests: the ``bullmq`` npm package pinned in ``tests/interop``.

``node_modules`` is installed with ``npm ci`` on first use. A machine without Node
skips the interop tests, except under ``CI=true``, where it fails them.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import subprocess
from typing import Any

from tests.required import unavailable

INTEROP = pathlib.Path(__file__).resolve().parent.parent / "interop"


def ensure_node_modules() -> str:
    """The ``node`` binary, after making sure the pinned packages are installed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Node", "node/npm are not on the PATH")
        raise AssertionError("unreachable")
    if not (INTEROP / "node_modules" / "bullmq" / "package.json").exists():
        result = subprocess.run(
            [npm, "ci", "--prefix", str(INTEROP), "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            unavailable("Node", f"npm ci failed: {result.stderr[-2000:]}")
    return node


async def run_script(node: str, script: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``tests/interop/<script>`` with ``payload`` as JSON on stdin; its JSON answer."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(INTEROP / script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=INTEROP,
    )
    try:
        stdout, stderr = await process.communicate(json.dumps(payload).encode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise AssertionError(f"{script} exited {process.returncode}: {stderr.decode()[-2000:]}")
    answer: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return answer
