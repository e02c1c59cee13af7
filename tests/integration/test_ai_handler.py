"""The ``AI`` task through the real task runner and Postgres, against a local model server.

The model side is a small HTTP/1.1 server on 127.0.0.1 that speaks just enough of
OpenAI's chat completions and Anthropic's messages wire protocols for the official
clients; each test scripts its answers. No network beyond loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from runtime_support import running_engine, smtp_server, wait_for

from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.handlers.ai import AiSettings
from statefleet.engine.runtime import InstanceView

TENANT = "acme"
SECRET = "sk-test-9f8e7d6c5b4a"  # must never appear in what the engine stores
EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "examples" / "ai-triage.json"
PROVIDERS = ["openai", "anthropic"]


# --- a fake model server -----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a decision (or raw text), an HTTP error, or no answer at all."""

    decision: dict[str, Any] | None = None
    text: str | None = None
    status: int = 200
    hang: bool = False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeModelServer:
    """Answers each request with the next scripted reply (the last one repeats)."""

    script: list[Reply]
    requests: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def settings(self, provider: str, **overrides: Any) -> AiSettings:
        base = self.url + "/v1" if provider == "openai" else self.url
        fields: dict[str, Any] = {
            "provider": provider,
            "base_url": base,
            "api_key": SECRET,
            "model": "fake-model",
            **overrides,
        }
        return AiSettings(**fields)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            path = request_line.split(" ")[1]
            received = Received(path, headers, json.loads(body or b"{}"))
            self.requests.append(received)
            reply = self.script[min(len(self.requests), len(self.script)) - 1]
            if reply.hang:
                await reader.read()  # until the client gives up and closes
                return
            status, payload = self._answer(received, reply)
            data = json.dumps(payload).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    @staticmethod
    def _answer(request: Received, reply: Reply) -> tuple[int, dict[str, Any]]:
        anthropic = request.path.endswith("/messages")
        if reply.status != 200:
            # A real provider's 401 names the key it refused; the engine must scrub it.
            sent = request.headers.get("x-api-key") or request.headers.get("authorization", "")
            message = f"status {reply.status}; key provided: {sent}"
            if anthropic:
                return reply.status, {"type": "error", "error": {"type": "x", "message": message}}
            return reply.status, {"error": {"message": message, "type": "x", "code": None}}
        model = request.body["model"]
        if anthropic:
            if reply.decision is not None:
                tool = request.body["tools"][0]["name"]
                block = {"type": "tool_use", "id": "t1", "name": tool, "input": reply.decision}
            else:
                block = {"type": "text", "text": reply.text or ""}
            return 200, {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": "tool_use" if reply.decision is not None else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 31, "output_tokens": 17},
            }
        content = json.dumps(reply.decision) if reply.decision is not None else reply.text
        return 200, {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 31, "completion_tokens": 17, "total_tokens": 48},
        }


@contextlib.asynccontextmanager
async def model_server(*script: Reply) -> AsyncIterator[FakeModelServer]:
    server = FakeModelServer(list(script))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def answer(event: str, confidence: float = 0.9, **payload: Any) -> Reply:
    return Reply(
        {"event": event, "payload": payload, "reason": "because", "confidence": confidence}
    )


# --- a workflow with one AI step ---------------------------------------------------------


def deciding_spec(policy: dict[str, Any], *, attempts: int = 1) -> dict[str, Any]:
    """APPROVE is allowed, REFUND is the forbidden event; DECIDED routes what was not emitted."""
    return {
        "id": "decider",
        "initial": "deciding",
        "context": {"customer": "Ada"},
        "states": {
            "deciding": {
                "entry": [
                    {
                        "type": "createTask",
                        "task": {
                            "type": "AI",
                            "name": "decide",
                            "input": {
                                "prompt": {
                                    "$expr": "'Should we approve ' + context.customer + '?'"
                                },
                                "system": "You approve refunds for a shop.",
                                "data": {"customer": {"$expr": "context.customer"}},
                            },
                            "policy": policy,
                            "completionEvent": "DECIDED",
                            "failureEvent": "AI_FAILED",
                            "retry": {
                                "maxAttempts": attempts,
                                "backoff": {"type": "fixed", "delay": 20},
                            },
                        },
                    }
                ],
                "on": {
                    "APPROVE": {
                        "target": "approved",
                        "actions": [
                            {"type": "assign", "path": "via", "value": {"$expr": "event.payload"}}
                        ],
                    },
                    "REFUND": "refunded",
                    "DECIDED": {
                        "guard": {"expr": "event.payload.emitted == false"},
                        "target": "review",
                        "actions": [
                            {"type": "assign", "path": "audit", "value": {"$expr": "event.payload"}}
                        ],
                    },
                    "AI_FAILED": {
                        "target": "ai_failed",
                        "actions": [
                            {
                                "type": "assign",
                                "path": "error",
                                "value": {"$expr": "event.payload.error"},
                            }
                        ],
                    },
                },
            },
            "approved": {"type": "final"},
            "refunded": {"type": "final"},
            "review": {"type": "final"},
            "ai_failed": {"type": "final"},
        },
    }


@dataclass
class Run:
    view: InstanceView
    task: dict[str, Any]
    history: list[dict[str, Any]]

    @property
    def events(self) -> list[str]:
        return [h["type"] for h in self.history]

    def stored(self) -> str:
        """Everything the engine stored about the run, as text (for secret checks)."""
        return json.dumps([self.view.context, self.task, self.history], default=str)


async def run_decider(
    database_dsn: str, settings: AiSettings, policy: dict[str, Any], *, attempts: int = 1
) -> Run:
    registry = HandlerRegistry.with_builtins(entry_points_group=None, ai=settings)
    async with running_engine(database_dsn, registry) as engine:
        await engine.service.deploy(TENANT, deciding_spec(policy, attempts=attempts))
        started = await engine.service.start(TENANT, "decider")
        view = await wait_for(engine.service, TENANT, started.instance_id)
        (task,) = await engine.service.tasks(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)
    return Run(view, task, history)


ALLOWED = ["APPROVE"]


# --- every policy combination ------------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_allowed_decision_with_direct_emit_is_emitted_into_the_instance(
    database_dsn: str, provider: str
) -> None:
    async with model_server(answer("APPROVE", 0.9, amount=12)) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True, "maxTokens": 300},
        )

    assert (run.view.status, run.view.value) == ("done", "approved")
    assert run.view.context["via"] == {"amount": 12}
    assert (run.task["status"], run.task["attempts"]) == ("succeeded", 1)
    output = run.task["output"]
    assert output["decision"] == {
        "event": "APPROVE",
        "payload": {"amount": 12},
        "reason": "because",
        "confidence": 0.9,
    }
    assert (output["emitted"], output["rejected"], output["rejectionReason"]) == (
        True,
        False,
        None,
    )
    assert (output["provider"], output["model"]) == (provider, "fake-model")
    assert output["usage"] == {"inputTokens": 31, "outputTokens": 17}
    assert output["finishReason"] == ("stop" if provider == "openai" else "tool_use")
    assert output["latencyMs"] >= 0
    assert "APPROVE" in run.events
    assert SECRET not in run.stored()

    (request,) = server.requests
    body = request.body
    # The key travels in a header only (which one depends on the SDK's version).
    sent = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    assert SECRET in sent
    assert body["model"] == "fake-model"
    if provider == "openai":
        assert request.path == "/v1/chat/completions"
        assert body["response_format"]["type"] == "json_schema"
        assert body["max_tokens"] == 300
        system, user = (m["content"] for m in body["messages"])
    else:
        assert request.path == "/v1/messages"
        assert body["tool_choice"] == {"type": "tool", "name": body["tools"][0]["name"]}
        assert body["max_tokens"] == 300
        system, user = body["system"], body["messages"][0]["content"]
    assert system.startswith("You approve refunds for a shop.")
    assert "Events the workflow accepts: APPROVE." in system
    assert user.startswith("Should we approve Ada?")
    assert '{"customer": "Ada"}' in user


async def test_the_decision_is_in_history_when_the_emitted_event_finishes_the_instance(
    database_dsn: str,
) -> None:
    """APPROVE (emitted) finishes the instance before DECIDED (the record) arrives."""
    async with model_server(answer("APPROVE", 0.9, amount=12)) as server:
        registry = HandlerRegistry.with_builtins(
            entry_points_group=None, ai=server.settings("openai")
        )
        policy = {"allowedEvents": ALLOWED, "allowDirectEmit": True}
        async with running_engine(database_dsn, registry) as engine:
            await engine.service.deploy(TENANT, deciding_spec(policy))
            started = await engine.service.start(TENANT, "decider")
            instance = started.instance_id
            view = await wait_for(engine.service, TENANT, instance)
            (task,) = await engine.service.tasks(TENANT, instance)
            deadline = asyncio.get_running_loop().time() + 20
            while True:  # the record may arrive after the instance is done: poll for it
                history = await engine.service.history(TENANT, instance)
                if "DECIDED" in [h["type"] for h in history]:
                    break
                assert asyncio.get_running_loop().time() < deadline, history
                await asyncio.sleep(0.02)

    assert (view.status, view.value) == ("done", "approved")
    types = [h["type"] for h in history]
    assert types.index("APPROVE") < types.index("DECIDED")
    record = history[types.index("DECIDED")]
    assert record["payload"] == task["output"]
    assert record["payload"]["emitted"] is True
    assert record["payload"]["decision"]["event"] == "APPROVE"
    # Recorded, not applied: the finished instance did not move.
    assert record["handled"] is False
    assert record["state_before"] == record["state_after"] == "approved"
    assert record["effects"] == []


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("policy", "reply", "rejected", "why"),
    [
        pytest.param(
            {"allowedEvents": ALLOWED, "allowDirectEmit": False},
            answer("APPROVE"),
            False,
            "allowDirectEmit is false",
            id="allowed-without-direct-emit",
        ),
        pytest.param(
            {"allowedEvents": ALLOWED, "allowDirectEmit": True},
            answer("REFUND", 0.99, amount=5000),
            True,
            "event 'REFUND' is not in allowedEvents (allowed: APPROVE)",
            id="forbidden-event",
        ),
        pytest.param(
            {"allowedEvents": ALLOWED, "allowDirectEmit": True, "minConfidence": 0.8},
            answer("APPROVE", 0.6),
            True,
            "confidence 0.6 is below minConfidence 0.8",
            id="low-confidence",
        ),
        pytest.param(
            {"allowedEvents": ALLOWED, "allowDirectEmit": True, "requireHumanApproval": True},
            answer("APPROVE", 1.0),
            False,
            "requireHumanApproval",
            id="require-human-approval",
        ),
    ],
)
async def test_a_decision_the_policy_does_not_let_through_is_stored_and_routed_not_emitted(
    database_dsn: str,
    provider: str,
    policy: dict[str, Any],
    reply: Reply,
    rejected: bool,
    why: str,
) -> None:
    async with model_server(reply) as server:
        run = await run_decider(database_dsn, server.settings(provider), policy)

    # The instance never received the proposed event: it went to review on DECIDED.
    assert (run.view.status, run.view.value) == ("done", "review")
    assert reply.decision is not None
    assert reply.decision["event"] not in run.events
    assert run.events[-1] == "DECIDED"
    # The audit log carries the decision, and why it was not emitted.
    payload = run.history[-1]["payload"]
    assert payload == run.task["output"] == run.view.context["audit"]
    assert payload["decision"]["event"] == reply.decision["event"]
    assert payload["decision"]["payload"] == reply.decision["payload"]
    assert (payload["emitted"], payload["rejected"]) == (False, rejected)
    assert why in payload["rejectionReason"]
    assert (run.task["status"], run.task["attempts"]) == ("succeeded", 1)
    assert SECRET not in run.stored()


# --- malformed answers and provider failures ---------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_malformed_answer_is_retried_then_fails_the_task_with_the_raw_text(
    database_dsn: str, provider: str
) -> None:
    raw = "Approve it, obviously. {not json"
    async with model_server(Reply(text=raw)) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True},
            attempts=3,
        )

    assert len(server.requests) == 3
    assert (run.task["status"], run.task["attempts"]) == ("failed", 3)
    assert run.task["last_error"].startswith("MalformedAnswer: malformed model answer (not JSON")
    assert run.task["last_error"].endswith(f"raw answer: {raw}")
    assert (run.view.value, run.events[-1]) == ("ai_failed", "AI_FAILED")
    assert raw in run.view.context["error"]
    assert "APPROVE" not in run.events


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_an_answer_that_fails_validation_is_retried_and_a_good_one_then_counts(
    database_dsn: str, provider: str
) -> None:
    bad = Reply({"event": "APPROVE", "reason": "sure", "confidence": 1.7})
    async with model_server(bad, answer("APPROVE")) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True},
            attempts=3,
        )

    assert (run.task["status"], run.task["attempts"]) == ("succeeded", 2)
    assert run.view.value == "approved"
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_provider_timeout_is_retried_then_fails_the_task(
    database_dsn: str, provider: str
) -> None:
    async with model_server(Reply(hang=True)) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True, "timeout": 200},
            attempts=2,
        )

    assert len(server.requests) == 2
    assert (run.task["status"], run.task["attempts"]) == ("failed", 2)
    assert run.task["last_error"] == f"AiProviderError: {provider} timed out after 200 ms"
    assert run.view.value == "ai_failed"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_5xx_and_429_are_retried_and_a_later_answer_succeeds(
    database_dsn: str, provider: str
) -> None:
    async with model_server(Reply(status=500), Reply(status=429), answer("APPROVE")) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True},
            attempts=3,
        )

    assert len(server.requests) == 3
    assert (run.task["status"], run.task["attempts"]) == ("succeeded", 3)
    assert run.view.value == "approved"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_5xx_on_every_attempt_fails_the_task_and_scrubs_the_key(
    database_dsn: str, provider: str
) -> None:
    async with model_server(Reply(status=503)) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True},
            attempts=2,
        )

    assert len(server.requests) == 2
    assert (run.task["status"], run.task["attempts"]) == ("failed", 2)
    assert run.task["last_error"].startswith(f"AiProviderError: {provider} answered 503")
    assert "***" in run.task["last_error"]
    assert SECRET not in run.stored()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_401_fails_the_task_at_once_without_leaking_the_key(
    database_dsn: str, provider: str
) -> None:
    async with model_server(Reply(status=401)) as server:
        run = await run_decider(
            database_dsn,
            server.settings(provider),
            {"allowedEvents": ALLOWED, "allowDirectEmit": True},
            attempts=3,
        )

    assert len(server.requests) == 1
    assert (run.task["status"], run.task["attempts"]) == ("failed", 1)
    assert run.task["last_error"].startswith(f"PermanentTaskError: {provider} answered 401")
    assert run.view.value == "ai_failed"
    assert SECRET not in run.stored()


async def test_an_invalid_policy_fails_the_task_at_once_without_calling_the_model(
    database_dsn: str,
) -> None:
    async with model_server(answer("APPROVE")) as server:
        run = await run_decider(
            database_dsn,
            server.settings("openai"),
            {"allowedEvents": ALLOWED, "allowDirectEmits": True},
            attempts=3,
        )

    assert server.requests == []
    assert (run.task["status"], run.task["attempts"]) == ("failed", 1)
    assert "allowDirectEmits: Extra inputs are not permitted" in run.task["last_error"]


async def test_json_mode_and_no_response_format_are_configurable(database_dsn: str) -> None:
    policy = {"allowedEvents": ALLOWED, "allowDirectEmit": True}
    async with model_server(answer("APPROVE")) as server:
        for response_format in ("json_object", "none"):
            settings = server.settings("openai", response_format=response_format)
            async with running_engine(
                database_dsn, HandlerRegistry.with_builtins(entry_points_group=None, ai=settings)
            ) as engine:
                await engine.service.deploy(TENANT, deciding_spec(policy))
                started = await engine.service.start(TENANT, "decider")
                view = await wait_for(engine.service, TENANT, started.instance_id)
            assert view.value == "approved"

    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    assert "response_format" not in server.requests[1].body


# --- the triage example ------------------------------------------------------------------


def test_the_triage_example_validates() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "statefleet", "validate", str(EXAMPLE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ai-triage")


TICKET = {
    "ticket": {
        "id": "T-1001",
        "email": "ada@example.com",
        "subject": "Cannot reset my password",
        "body": "The reset link in your email has expired. Can you send a new one?",
    }
}


async def _triage(
    database_dsn: str,
    reply: Reply,
    human: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[InstanceView, list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    """Runs the example for one ticket; ``human(task name, input)`` completes HUMAN tasks."""
    spec = json.loads(EXAMPLE.read_text())
    async with model_server(reply) as server:
        with smtp_server() as (inbox, smtp):
            registry = HandlerRegistry.with_builtins(
                smtp, entry_points_group=None, ai=server.settings("openai")
            )
            async with running_engine(database_dsn, registry) as engine:
                await engine.service.deploy(TENANT, spec)
                started = await engine.service.start(TENANT, "ai-triage", TICKET)
                instance = started.instance_id
                view = await _settle(engine, instance, human)
                tasks = await engine.service.tasks(TENANT, instance)
                history = await engine.service.history(TENANT, instance)
            messages = list(inbox.messages)
    return view, tasks, history, messages


async def _settle(
    engine: Any,
    instance: uuid.UUID,
    human: Callable[[str, dict[str, Any]], dict[str, Any]] | None,
) -> InstanceView:
    """Waits until the instance is done, completing HUMAN tasks as they appear."""
    done: set[Any] = set()

    def waiting_or_finished(view: InstanceView) -> bool:
        return view.status != "running" or view.value in ("awaiting_approval", "with_agent")

    while True:
        view = await wait_for(engine.service, TENANT, instance, waiting_or_finished)
        if view.status != "running":
            return view
        for task in await engine.service.tasks(TENANT, instance):
            if task["type"] == "HUMAN" and task["status"] == "pending" and task["id"] not in done:
                assert human is not None, f"unexpected human task {task['name']}"
                done.add(task["id"])
                await engine.service.complete_task(
                    TENANT, task["id"], human(task["name"], task["input"])
                )
        await wait_for(engine.service, TENANT, instance, _left(view.value))


def _left(value: Any) -> Callable[[InstanceView], bool]:
    return lambda view: view.value != value


async def test_triage_auto_replies_when_the_model_is_sure(database_dsn: str) -> None:
    reply = answer(
        "AUTO_REPLY", 0.95, category="account", reply="Here is a new reset link: https://x.test"
    )
    view, tasks, history, messages = await _triage(database_dsn, reply)

    assert (view.status, view.value) == ("done", "resolved")
    assert view.context["resolution"] == "auto_reply"
    (message,) = messages
    assert (message["To"], message["Subject"]) == (
        "ada@example.com",
        "Re: Cannot reset my password",
    )
    assert "new reset link" in message.get_payload()
    assert [t["type"] for t in tasks] == ["AI", "EMAIL"]
    assert "AUTO_REPLY" in [h["type"] for h in history]


async def test_triage_sends_a_forbidden_decision_to_a_person_who_approves_a_reply(
    database_dsn: str,
) -> None:
    reply = answer("CLOSE_TICKET", 0.99, reply="Closing, nothing to do.")
    seen: list[dict[str, Any]] = []

    def person(name: str, input: dict[str, Any]) -> dict[str, Any]:
        seen.append(input)
        assert name == "approve-triage"
        return {"approved": True, "reply": "Sorry! A new link is on its way."}

    view, tasks, history, messages = await _triage(database_dsn, reply, person)

    assert (view.status, view.value) == ("done", "resolved")
    assert view.context["resolution"] == "approved_reply"
    assert "CLOSE_TICKET" not in [h["type"] for h in history]
    triaged = next(h for h in history if h["type"] == "TRIAGED")
    assert triaged["payload"]["rejected"] is True
    assert triaged["payload"]["decision"]["event"] == "CLOSE_TICKET"
    assert seen[0]["proposal"]["decision"]["event"] == "CLOSE_TICKET"
    (message,) = messages
    assert "A new link is on its way." in message.get_payload()
    assert [t["type"] for t in tasks] == ["AI", "HUMAN", "EMAIL"]


async def test_triage_hands_an_escalated_ticket_to_an_agent(database_dsn: str) -> None:
    reply = answer("ESCALATE", 0.9, category="security")

    def agent(name: str, input: dict[str, Any]) -> dict[str, Any]:
        assert name == "handle-ticket"
        assert input["ticket"]["id"] == "T-1001"
        return {"note": "handled by phone"}

    view, tasks, _, messages = await _triage(database_dsn, reply, agent)

    assert (view.status, view.value) == ("done", "resolved")
    assert view.context["resolution"] == "agent"
    assert messages == []
    assert [t["type"] for t in tasks] == ["AI", "HUMAN"]
