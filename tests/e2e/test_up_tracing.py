"""One trace per event under ``statefleet up``: the API request, the shard's step, the
task handler and the step of its completion, exported over OTLP/HTTP to a receiver
this test runs (the trace context crosses the queue and the Ray actors in the jobs)."""

from __future__ import annotations

import json
import pathlib
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import httpx
import pytest
from embedded_support import clean_env, state_home
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from up_support import cli, start_up, stop_up

from statefleet.embedded import free_port
from tests.http_support import serving

HELLO = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "hello-workflow.json"


class _Receiver(BaseHTTPRequestHandler):
    """A collector's OTLP/HTTP traces endpoint: keeps (trace id, span name, service)."""

    spans: ClassVar[list[tuple[str, str, str]]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        self.spans.append((span.trace_id.hex(), span.name, service))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def collector() -> Iterator[str]:
    _Receiver.spans = []
    with serving(_Receiver) as url:
        yield url


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_trace_from_the_request_to_the_task_handler(
    tmp_path: pathlib.Path, collector: str
) -> None:
    trace_id = secrets.token_hex(16)
    with state_home() as home:
        env = clean_env(
            STATEFLEET_HOME=str(home),
            OTEL_EXPORTER_OTLP_ENDPOINT=collector,
            OTEL_SERVICE_NAME="statefleet-test",
        )
        log = tmp_path / "up.out"
        process, watcher, client = start_up(env, free_port(), log)
        try:
            url, key = client["STATEFLEET_URL"], client["STATEFLEET_API_KEY"]
            cli(client, "deploy", str(HELLO))
            started = httpx.post(
                f"{url}/v1/instances",
                json={"definitionKey": "hello-workflow"},
                headers={
                    "Authorization": f"Bearer {key}",
                    "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                },
                timeout=30,
            )
            assert started.status_code == 201, started.text
            wanted = {
                "POST /v1/instances",
                "statefleet.step WORKFLOW_START",
                "statefleet.task EMAIL",
                "statefleet.step HELLO_SENT",
            }
            deadline = time.monotonic() + 90
            while True:
                with _Receiver.lock:
                    names = {name for tid, name, _ in _Receiver.spans if tid == trace_id}
                if wanted <= names:
                    break
                assert time.monotonic() < deadline, (names, log.read_text()[-3000:])
                time.sleep(0.5)
            got = json.loads(cli(client, "get", started.json()["id"], "--json"))
            assert got["status"] == "done"
            with _Receiver.lock:
                services = {svc for tid, _, svc in _Receiver.spans if tid == trace_id}
            assert services == {"statefleet-test"}
        finally:
            stop_up(process, watcher)
