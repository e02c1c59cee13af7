"""The client's own logic, against an in-memory fake of ``docs/api.md``.

House style runs client tests against the real app (``httpx.ASGITransport``); those
live in ``tests/integration/test_client_e2e.py``. This module uses an
``httpx.MockTransport`` fake on purpose, and only for what the client decides by
itself and a real server makes hard to provoke: mapping error answers to exceptions
(including bodies not in the API's shape), following cursors page by page, cutting
``start_many`` into chunks, ``wait``'s polling and timeout, and how requests are
built (camelCase bodies, omitted optionals, quoted path segments, the bearer key).
The fake is not a second server: it knows a handful of routes and nothing about
workflows.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import statefleet.client as client_module
from statefleet.client import (
    AsyncClient,
    AuthError,
    Client,
    Conflict,
    ConnectionFailed,
    Instance,
    InvalidRequest,
    InvalidUrl,
    NotFound,
    RequestTimedOut,
    ServerError,
    StatefleetError,
)

KEY = "sf_k1_secret"
CREATED = "2025-01-01T00:00:00Z"


def instance(id: str, status: str = "running", **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "tenantId": "t1",
        "definitionKey": "hello-workflow",
        "definitionVersion": 1,
        "status": status,
        "value": "start",
        "context": {"greeted": False},
        "output": None,
        "error": None,
        "createdAt": CREATED,
        "updatedAt": CREATED,
        **extra,
    }


def error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


class FakeApi:
    """A few routes of the contract; records every request it answers."""

    def __init__(self, *, instances: int = 0, history: int = 0, page: int = 2) -> None:
        self.requests: list[httpx.Request] = []
        self.instances = [instance(f"i{n}") for n in range(instances)]
        self.history = [
            {"seq": n, "type": "E", "payload": {}, "createdAt": CREATED} for n in range(history)
        ]
        self.page = page
        #: statuses ``GET /v1/instances/w`` answers in turn (the last one repeats).
        self.statuses = ["running"]
        self.batches: list[list[Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path, params = request.url.path, request.url.params
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return error(401, "unauthorized", "missing or unknown API key")
        if path == "/v1/instances" and request.method == "GET":
            start = int(params.get("cursor", "0"))
            items = self.instances[start : start + int(params["limit"])]
            end = start + len(items)
            cursor = str(end) if end < len(self.instances) else None
            return httpx.Response(200, json={"items": items, "nextCursor": cursor})
        if path == "/v1/instances/i1/history":
            after = int(params.get("after", "-1"))
            items = [e for e in self.history if e["seq"] > after][: int(params["limit"])]
            cursor = str(items[-1]["seq"]) if items and items[-1] != self.history[-1] else None
            return httpx.Response(200, json={"items": items, "nextCursor": cursor})
        if path == "/v1/instances/w":
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return httpx.Response(200, json=instance("w", status))
        if path == "/v1/instances" and request.method == "POST":
            return httpx.Response(201, json=instance("new"))
        if path == "/v1/batches":
            inputs = json.loads(request.content)["inputs"]
            self.batches.append(inputs)
            batch = {"batchId": f"b{len(self.batches)}", "count": len(inputs)}
            return httpx.Response(201, json=batch)
        return error(404, "not_found", f"no route {path}")

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


@pytest.fixture(autouse=True)
def no_ambient_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the developer's variables nor their ``statefleet up`` may leak in."""
    monkeypatch.delenv("STATEFLEET_URL", raising=False)
    monkeypatch.delenv("STATEFLEET_API_KEY", raising=False)
    monkeypatch.setenv("STATEFLEET_HOME", str(tmp_path / "home"))


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def client(api: FakeApi) -> Iterator[Client]:
    with Client("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        yield c


def client_answering(response: httpx.Response) -> Client:
    return Client("http://sf.test", KEY, transport=httpx.MockTransport(lambda _: response))


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_json", InvalidRequest),
        (400, "invalid_request", InvalidRequest),
        (401, "unauthorized", AuthError),
        (403, "forbidden", AuthError),
        (404, "unknown_instance", NotFound),
        (409, "instance_finished", Conflict),
        (413, "payload_too_large", InvalidRequest),
        (422, "invalid_spec", InvalidRequest),
        (500, "internal", ServerError),
        (503, "unavailable", ServerError),
        (418, "teapot", StatefleetError),
    ],
)
def test_error_answers_raise_their_class_with_code_and_message(
    status: int, code: str, cls: type[StatefleetError]
) -> None:
    with client_answering(error(status, code, "a sentence")) as c, pytest.raises(cls) as caught:
        c.get("i1")
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.code, caught.value.message) == (
        status,
        code,
        "a sentence",
    )
    assert str(caught.value).splitlines()[0] == f"{code}: a sentence"


def test_spec_errors_carry_their_details() -> None:
    details = [{"path": "states.a.on.GO.target", "message": "does not resolve"}]
    answer = error(422, "invalid_spec", "spec validation failed", details=details)
    with client_answering(answer) as c, pytest.raises(InvalidRequest) as caught:
        c.deploy({"id": "x"})
    assert caught.value.details == details


def test_an_error_body_not_in_the_api_shape_still_maps_by_status() -> None:
    answer = httpx.Response(502, text="<html>Bad Gateway</html>")
    with client_answering(answer) as c, pytest.raises(ServerError) as caught:
        c.get("i1")
    assert (caught.value.code, caught.value.message) == ("http_502", "Bad Gateway")


def test_a_missing_key_is_an_auth_error(api: FakeApi) -> None:
    with (
        Client("http://sf.test", transport=httpx.MockTransport(api)) as c,
        pytest.raises(AuthError) as caught,
    ):
        c.get("i1")
    assert caught.value.code == "unauthorized"
    assert "authorization" not in api.requests[0].headers


def test_a_401_says_where_keys_come_from(api: FakeApi) -> None:
    transport = httpx.MockTransport(api)
    with Client("http://sf.test", transport=transport) as c, pytest.raises(AuthError) as unsent:
        c.get("i1")
    with (
        Client("http://sf.test", "sf_nope_x", transport=transport) as c,
        pytest.raises(AuthError) as unknown,
    ):
        c.get("i1")
    assert str(unsent.value.hint).startswith("no API key was sent")
    assert str(unknown.value.hint).startswith("the server does not know this key")
    for caught in (unsent, unknown):
        assert "statefleet tenants create" in str(caught.value)
        assert "$STATEFLEET_HOME/credentials.json" in str(caught.value)


# --- no answer: real sockets, since what matters is what httpx raises on them --


@pytest.fixture
def silent_server() -> Iterator[tuple[str, threading.Event]]:
    """A port that accepts connections and reads requests but never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    got_request = threading.Event()
    done = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            got_request.set()
            done.wait(30)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", got_request
    finally:
        done.set()
        listener.close()
        thread.join(5)


def test_no_server_is_a_connection_failed_naming_the_url() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with Client(url, KEY) as c, pytest.raises(ConnectionFailed) as caught:
        c.get("i1")
    assert caught.value.code == "unreachable"
    assert f"is `statefleet up` running? ({url})" in caught.value.message
    assert "STATEFLEET_URL" in caught.value.message
    assert not isinstance(caught.value, httpx.HTTPError)


def test_a_timeout_says_the_request_may_have_been_applied(
    silent_server: tuple[str, threading.Event],
) -> None:
    url, got_request = silent_server
    with Client(url, KEY, timeout=0.3) as c, pytest.raises(RequestTimedOut) as caught:
        c.start("hello-workflow")
    assert got_request.is_set()  # it was sent, then nothing came back
    assert caught.value.message == (
        "POST /v1/instances timed out after 0.3 s; the request may have been applied"
    )
    assert "unreachable" not in str(caught.value)


async def test_async_errors_are_the_same(silent_server: tuple[str, threading.Event]) -> None:
    url, _ = silent_server
    async with AsyncClient(url, KEY, timeout=0.3) as c:
        with pytest.raises(RequestTimedOut):
            await c.get("i1")


def test_a_connection_closed_without_an_answer_is_a_connection_failed() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with Client(url, KEY) as c, pytest.raises(ConnectionFailed) as caught:
            c.send("i1", "GO")
    finally:
        listener.close()
        thread.join(5)
    assert caught.value.code == "connection_failed"
    assert caught.value.message.endswith("the request may have been applied")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (
            "http://127.0.0.1:8080/v1",
            "drop /v1, the client adds it to every path (use http://127.0.0.1:8080)",
        ),
        ("http://sf.example/api/v1/", "(use http://sf.example/api)"),
        ("127.0.0.1:8080", "needs http:// or https://"),
    ],
)
def test_a_wrong_url_is_refused_before_any_request(url: str, says: str) -> None:
    with pytest.raises(InvalidUrl) as caught:
        Client(url, KEY)
    assert says in caught.value.message
    assert isinstance(caught.value, ValueError)


# --- where to connect -----------------------------------------------------------


def recording_client(*args: Any) -> tuple[Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=instance("i1"))

    return Client(*args, transport=httpx.MockTransport(answer)), seen


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEFLEET_URL", " http://sf.example:9000 ")
    monkeypatch.setenv("STATEFLEET_API_KEY", "sf_env_key")
    client, seen = recording_client()
    with client:
        client.get("i1")
    assert str(seen[0].url) == "http://sf.example:9000/v1/instances/i1"
    assert seen[0].headers["authorization"] == "Bearer sf_env_key"
    explicit, seen = recording_client("http://other.example", "sf_arg_key")
    with explicit:
        explicit.get("i1")
    assert str(seen[0].url).startswith("http://other.example/v1/")
    assert seen[0].headers["authorization"] == "Bearer sf_arg_key"


def write_credentials_file(url: str) -> None:
    from statefleet.credentials import Credentials, credentials_path, write_credentials

    path = credentials_path()
    path.parent.mkdir(parents=True)
    write_credentials(path, Credentials(url, "default", "sf_saved_key", "sfa_admin"))


def test_without_variables_the_client_talks_to_statefleet_up() -> None:
    write_credentials_file("http://127.0.0.1:9123")
    client, seen = recording_client()
    with client:
        client.get("i1")
    assert client.base_url == "http://127.0.0.1:9123"
    assert str(seen[0].url) == "http://127.0.0.1:9123/v1/instances/i1"
    assert seen[0].headers["authorization"] == "Bearer sf_saved_key"


def test_the_saved_key_goes_only_to_the_server_that_made_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_credentials_file("http://127.0.0.1:9123")
    same, seen = recording_client("http://localhost:9123/")
    with same:
        same.get("i1")
    assert seen[0].headers["authorization"] == "Bearer sf_saved_key"
    monkeypatch.setenv("STATEFLEET_URL", "http://sf.example:9123")
    other, seen = recording_client()
    with other:
        other.get("i1")
    assert "authorization" not in seen[0].headers


# --- requests ---------------------------------------------------------------


def test_start_sends_camel_case_and_omits_what_was_not_given(client: Client, api: FakeApi) -> None:
    started = client.start("hello-workflow", {"name": "Ada"}, idempotency_key="k-1")
    client.start("hello-workflow", version=2)
    assert api.bodies() == [
        {"definitionKey": "hello-workflow", "input": {"name": "Ada"}, "idempotencyKey": "k-1"},
        {"definitionKey": "hello-workflow", "version": 2},
    ]
    assert isinstance(started, Instance)
    assert (started.tenant_id, started.definition_key, started.definition_version) == (
        "t1",
        "hello-workflow",
        1,
    )
    assert started.context == {"greeted": False}


def test_priority_is_sent_only_when_given(client: Client, api: FakeApi) -> None:
    """Left out, the server's default applies (10 for a start, 5 for a batch)."""
    client.start("hello-workflow", priority=3)
    client.start_many("hello-workflow", [{}] * 3, chunk_size=2, priority=0)
    client.batch("hello-workflow", [{}], priority=7)
    client.batch("hello-workflow", [{}])
    assert [body.get("priority", "left out") for body in api.bodies()] == [
        3,
        0,
        0,
        7,
        "left out",
    ]


def test_ids_are_quoted_into_one_path_segment(client: Client, api: FakeApi) -> None:
    with pytest.raises(NotFound):
        client.get("../admin?x=1")
    assert api.requests[0].url.raw_path == b"/v1/instances/..%2Fadmin%3Fx%3D1"


# --- pagination -------------------------------------------------------------


def test_list_follows_cursors_across_pages_and_passes_filters() -> None:
    api = FakeApi(instances=5)
    with Client("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        ids = [i.id for i in c.list(definition_key="hello-workflow", status="done", page_size=2)]
    assert ids == ["i0", "i1", "i2", "i3", "i4"]
    assert [r.url.params.get("cursor") for r in api.requests] == [None, "2", "4"]
    assert all(r.url.params["definitionKey"] == "hello-workflow" for r in api.requests)
    assert all(r.url.params["status"] == "done" for r in api.requests)
    assert "createdAfter" not in api.requests[0].url.params


def test_list_fetches_pages_only_as_the_iterator_advances() -> None:
    api = FakeApi(instances=10)
    with Client("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        first = next(c.list(page_size=3))
    assert first.id == "i0"
    assert len(api.requests) == 1


def test_history_pages_with_after() -> None:
    api = FakeApi(history=5)
    with Client("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        seqs = [e.seq for e in c.history("i1", page_size=2)]
    assert seqs == [0, 1, 2, 3, 4]
    assert [r.url.params.get("after") for r in api.requests] == [None, "1", "3"]


async def test_async_list_and_history_page_the_same_way() -> None:
    api = FakeApi(instances=3, history=3)
    async with AsyncClient("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        ids = [i.id async for i in c.list(page_size=2)]
        seqs = [e.seq async for e in c.history("i1", page_size=2)]
    assert ids == ["i0", "i1", "i2"]
    assert seqs == [0, 1, 2]


# --- chunking ---------------------------------------------------------------


def test_start_many_cuts_inputs_into_chunks(client: Client, api: FakeApi) -> None:
    inputs = ({"n": n} for n in range(12))  # a generator: read lazily, once
    started = client.start_many("hello-workflow", inputs, chunk_size=5)
    assert [(b.batch_id, b.count) for b in started] == [("b1", 5), ("b2", 5), ("b3", 2)]
    assert [n["n"] for chunk in api.batches for n in chunk] == list(range(12))
    assert all(body["definitionKey"] == "hello-workflow" for body in api.bodies())


def test_start_many_with_no_inputs_sends_nothing(client: Client, api: FakeApi) -> None:
    assert client.start_many("hello-workflow", []) == []
    assert api.requests == []


def test_start_many_refuses_an_empty_chunk_size(client: Client) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        client.start_many("hello-workflow", [{}], chunk_size=0)


async def test_async_start_many_chunks_too() -> None:
    api = FakeApi()
    async with AsyncClient("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        started = await c.start_many("k", [{}] * 3, chunk_size=2, version=4)
    assert [b.count for b in started] == [2, 1]
    assert all(body["version"] == 4 for body in api.bodies())


# --- wait -------------------------------------------------------------------


@pytest.mark.parametrize("final", ["done", "failed", "cancelled"])
def test_wait_polls_until_the_instance_is_finished(
    client: Client, api: FakeApi, final: str
) -> None:
    api.statuses = ["running", "running", final]
    finished = client.wait("w", timeout=60, poll_interval=0)
    assert finished.status == final
    assert len(api.requests) == 3


def test_wait_times_out_on_a_running_instance(client: Client, api: FakeApi) -> None:
    with pytest.raises(TimeoutError, match="still running"):
        client.wait("w", timeout=0, poll_interval=0)
    assert len(api.requests) == 1  # it looks once even with no time left


async def test_async_wait_polls_and_times_out() -> None:
    api = FakeApi()
    async with AsyncClient("http://sf.test", KEY, transport=httpx.MockTransport(api)) as c:
        api.statuses = ["running", "done"]
        assert (await c.wait("w", poll_interval=0)).status == "done"
        api.statuses = ["running"]
        with pytest.raises(TimeoutError):
            await c.wait("w", timeout=0)


# --- surface ----------------------------------------------------------------


def test_public_names_are_sorted_and_exist() -> None:
    names = client_module.__all__
    assert names == sorted(names)
    assert all(hasattr(client_module, name) for name in names)


def test_both_clients_offer_the_same_calls() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert public(Client) - {"close"} == public(AsyncClient) - {"aclose"}
