"""The ``AI`` task type: ask a model for a decision, let the policy decide what happens.

A workflow step can ask a model what to do next; the engine, not the model, stays
in charge of what may happen. The handler sends the task's prompt to the
configured provider, asks for a structured decision ``{event, payload, reason,
confidence}``, validates it with pydantic, and judges it against the task's
``policy`` (``ai_policy.judge``). The decision is always stored in the task's
output; its event is emitted into the instance only when the policy allows it.

Providers sit behind one small interface (``ModelProvider``): ``openai`` speaks
OpenAI's chat completions (the official ``openai`` client, which also talks to
vLLM, Ollama and llama.cpp servers through a base URL) and ``anthropic`` speaks
Anthropic's messages API (the official ``anthropic`` client). Both SDKs are
imported on first use, so a worker that runs no AI task never loads them.

Secrets: the API key lives only in ``AiSettings`` (hidden from its ``repr``) and
in the request headers; error messages are scrubbed of it before they become the
task's ``last_error``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Literal, Protocol

from statefleet.engine.handlers.ai_policy import (
    DECISION_JSON_SCHEMA,
    InvalidPolicy,
    Usage,
    audit_output,
    judge,
    parse_decision,
    parse_policy,
)
from statefleet.engine.handlers.base import Emit, HandlerResult, PermanentTaskError, TaskContext
from statefleet.engine.record import record

__all__ = [
    "PROVIDERS",
    "AiHandler",
    "AiProviderError",
    "AiSettings",
    "AnthropicProvider",
    "ModelAnswer",
    "ModelProvider",
    "ModelRequest",
    "OpenAIProvider",
]

log = logging.getLogger(__name__)

PROVIDERS = ("openai", "anthropic")
ResponseFormat = Literal["json_schema", "json_object", "none"]
RESPONSE_FORMATS: tuple[ResponseFormat, ...] = ("json_schema", "json_object", "none")

#: Anthropic requires ``max_tokens``; a decision is short.
DEFAULT_MAX_TOKENS = 1024
#: Sent as the key to a local server configured without one (the SDKs insist on a key).
NO_KEY = "not-needed"

ENGINE_INSTRUCTIONS = """\
You choose the next step of a workflow. Answer with exactly one JSON object and \
nothing else, with these keys:
- "event": the event to send to the workflow (a string),
- "payload": data for that event (a JSON object, may be empty),
- "reason": why, in one or two sentences (a string),
- "confidence": how sure you are, from 0 to 1 (a number)."""


@record
class AiSettings:
    """Which model server ``AI`` tasks talk to; read from ``STATEFLEET_AI_*``.

    ``api_key`` is kept out of ``repr`` so that logging the settings never logs it.
    """

    provider: str = "openai"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    timeout_ms: int = 60_000
    #: How ``openai`` asks for JSON: a JSON schema (OpenAI, vLLM, Ollama, llama.cpp),
    #: plain JSON mode (older servers), or nothing but the instructions.
    response_format: ResponseFormat = "json_schema"

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(
                f"unknown AI provider {self.provider!r}; choose one of: {', '.join(PROVIDERS)}"
            )
        if self.response_format not in RESPONSE_FORMATS:
            raise ValueError(
                f"unknown AI response format {self.response_format!r}; "
                f"choose one of: {', '.join(RESPONSE_FORMATS)}"
            )
        if self.timeout_ms <= 0:
            raise ValueError("the AI timeout must be a positive number of milliseconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AiSettings:
        """Settings from the environment; an unknown provider is a startup error."""
        env = os.environ if env is None else env
        provider = (env.get("STATEFLEET_AI_PROVIDER") or "openai").strip().lower()
        vendor_key = "ANTHROPIC_API_KEY" if provider == "anthropic" else "OPENAI_API_KEY"
        response_format = (env.get("STATEFLEET_AI_RESPONSE_FORMAT") or "json_schema").lower()
        return cls(
            provider=provider,
            base_url=env.get("STATEFLEET_AI_BASE_URL") or None,
            api_key=env.get("STATEFLEET_AI_API_KEY") or env.get(vendor_key) or None,
            model=env.get("STATEFLEET_AI_MODEL") or None,
            timeout_ms=int(env.get("STATEFLEET_AI_TIMEOUT_MS") or 60_000),
            response_format=response_format,  # type: ignore[arg-type]  # checked on init
        )

    def key_for_client(self) -> str:
        """The key to hand an SDK: a local server needs none, a hosted API does."""
        if self.api_key:
            return self.api_key
        if self.base_url:
            return NO_KEY
        vendor = "ANTHROPIC_API_KEY" if self.provider == "anthropic" else "OPENAI_API_KEY"
        raise PermanentTaskError(
            f"no API key for the {self.provider} provider: set STATEFLEET_AI_API_KEY or {vendor}"
        )


@record
class ModelRequest:
    """One call to a model, provider-neutral."""

    model: str
    system: str
    user: str
    max_tokens: int | None
    timeout_s: float


@record
class ModelAnswer:
    """A model's raw answer and the facts the audit record keeps about the call."""

    text: str
    model: str
    usage: Usage
    finish_reason: str | None


class AiProviderError(RuntimeError):
    """A transient provider failure (timeout, connection, 408/409/429/5xx): retried."""


class ModelProvider(Protocol):
    """A model server behind one call.

    Obligations: returns the raw text of the answer (never parses it); raises
    ``AiProviderError`` for failures a retry may cure and ``PermanentTaskError``
    for those it cannot (401, 403, 400, an unknown model); never puts the API key
    in an exception message; does no retries of its own (the task's ``retry``
    policy is the only one, so every attempt is counted and visible); closes every
    connection it opens before returning.
    """

    name: str

    async def complete(self, request: ModelRequest) -> ModelAnswer: ...


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret and secret != NO_KEY else text


def _status_error(provider: str, status: int, message: str, secret: str | None) -> Exception:
    """4xx answers a retry would get again are permanent; 408, 409, 429 and 5xx are not."""
    text = _redact(f"{provider} answered {status}: {message}", secret)
    if status in (408, 409, 429) or status >= 500:
        return AiProviderError(text)
    return PermanentTaskError(text)


class OpenAIProvider:
    """OpenAI's chat completions, via the official ``openai`` client.

    The same wire protocol is served by vLLM, Ollama and llama.cpp, so a base URL
    is all it takes to use them. The hosted API gets ``max_completion_tokens``
    (its reasoning models refuse ``max_tokens``); other servers get ``max_tokens``,
    which they all understand.
    """

    name = "openai"

    def __init__(self, settings: AiSettings) -> None:
        self.settings = settings

    async def complete(self, request: ModelRequest) -> ModelAnswer:
        import openai
        from openai.types.chat import ChatCompletionMessageParam

        key = self.settings.key_for_client()
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": request.system},
            {"role": "user", "content": request.user},
        ]
        options: dict[str, Any] = {}
        if self.settings.response_format == "json_schema":
            options["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "workflow_decision",
                    "schema": DECISION_JSON_SCHEMA,
                    "strict": False,
                },
            }
        elif self.settings.response_format == "json_object":
            options["response_format"] = {"type": "json_object"}
        if request.max_tokens is not None:
            limit = "max_tokens" if self.settings.base_url else "max_completion_tokens"
            options[limit] = request.max_tokens
        # One client per call: connections never outlive the attempt that opened them,
        # and a model call's latency dwarfs a new connection's.
        async with openai.AsyncOpenAI(
            api_key=key,
            base_url=self.settings.base_url,
            timeout=request.timeout_s,
            max_retries=0,
        ) as client:
            try:
                response = await client.chat.completions.create(
                    model=request.model, messages=messages, **options
                )
            except openai.APITimeoutError:
                raise AiProviderError(
                    f"openai timed out after {request.timeout_s * 1000:.0f} ms"
                ) from None
            except openai.APIConnectionError as error:
                raise AiProviderError(_redact(f"openai unreachable: {error}", key)) from None
            except openai.APIStatusError as error:
                raise _status_error("openai", error.status_code, error.message, key) from None
        if not response.choices:
            return ModelAnswer("", response.model or request.model, _openai_usage(response), None)
        choice = response.choices[0]
        text = choice.message.content or choice.message.refusal or ""
        return ModelAnswer(
            text=text,
            model=response.model or request.model,
            usage=_openai_usage(response),
            finish_reason=choice.finish_reason,
        )


def _openai_usage(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    return Usage(usage.prompt_tokens, usage.completion_tokens)


class AnthropicProvider:
    """Anthropic's messages API, via the official ``anthropic`` client.

    The decision is requested as a forced call of one tool whose input schema is
    the decision's: every Claude model supports it, and the tool input arrives as
    JSON. A reply without that tool call is passed on as text (and then fails
    validation as a malformed answer).
    """

    name = "anthropic"
    tool_name = "record_decision"

    def __init__(self, settings: AiSettings) -> None:
        self.settings = settings

    async def complete(self, request: ModelRequest) -> ModelAnswer:
        import anthropic

        key = self.settings.key_for_client()
        async with anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.settings.base_url,
            timeout=request.timeout_s,
            max_retries=0,
        ) as client:
            try:
                message = await client.messages.create(
                    model=request.model,
                    max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                    system=request.system,
                    messages=[{"role": "user", "content": request.user}],
                    tools=[
                        {
                            "name": self.tool_name,
                            "description": "Record the decision about the workflow's next step.",
                            "input_schema": DECISION_JSON_SCHEMA,
                        }
                    ],
                    tool_choice={"type": "tool", "name": self.tool_name},
                )
            except anthropic.APITimeoutError:
                raise AiProviderError(
                    f"anthropic timed out after {request.timeout_s * 1000:.0f} ms"
                ) from None
            except anthropic.APIConnectionError as error:
                raise AiProviderError(_redact(f"anthropic unreachable: {error}", key)) from None
            except anthropic.APIStatusError as error:
                raise _status_error("anthropic", error.status_code, error.message, key) from None
        text = ""
        for block in message.content:
            if block.type == "tool_use" and block.name == self.tool_name:
                text = json.dumps(block.input, ensure_ascii=False)
                break
        else:
            text = "".join(block.text for block in message.content if block.type == "text")
        return ModelAnswer(
            text=text,
            model=message.model or request.model,
            usage=Usage(message.usage.input_tokens, message.usage.output_tokens),
            finish_reason=message.stop_reason,
        )


def _provider_for(settings: AiSettings) -> ModelProvider:
    if settings.provider == "anthropic":
        return AnthropicProvider(settings)
    return OpenAIProvider(settings)


class AiHandler:
    """Runs ``AI`` tasks: one model call per attempt, judged by the task's policy.

    Input: ``prompt`` (a string, ``$expr`` already resolved), optional ``system``
    (instructions placed before the engine's own), ``model`` (else the configured
    one), ``data`` and ``context`` (JSON shown to the model). The policy comes from
    the task's ``policy``. Output: the audit record of ``ai_policy.audit_output``.

    Failures: a malformed answer raises ``MalformedAnswer`` (retried; the last
    attempt's error holds the raw answer); timeouts, 408/409/429 and 5xx raise
    ``AiProviderError`` (retried); a bad policy or input, a missing model or key,
    and other 4xx raise ``PermanentTaskError``.
    """

    def __init__(
        self, settings: AiSettings | None = None, *, provider: ModelProvider | None = None
    ) -> None:
        self.settings = settings or AiSettings.from_env()
        self.provider = provider or _provider_for(self.settings)

    async def __call__(self, task: TaskContext) -> HandlerResult:
        try:
            policy = parse_policy(task.policy)
        except InvalidPolicy as error:
            raise PermanentTaskError(str(error)) from None
        data = task.input if isinstance(task.input, dict) else {}
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise PermanentTaskError("AI input needs a non-empty string `prompt`")
        system = data.get("system")
        if system is not None and not isinstance(system, str):
            raise PermanentTaskError("AI input `system` must be a string")
        model = data.get("model") or self.settings.model
        if not isinstance(model, str):
            raise PermanentTaskError(
                "AI task has no model: set input `model` or STATEFLEET_AI_MODEL"
            )
        timeout_ms = policy.timeout_ms or self.settings.timeout_ms
        request = ModelRequest(
            model=model,
            system=_system_prompt(system, policy.allowed_events),
            user=_user_prompt(prompt, data),
            max_tokens=policy.max_tokens,
            timeout_s=timeout_ms / 1000,
        )
        started = time.monotonic()
        answer = await self.provider.complete(request)
        latency_ms = round((time.monotonic() - started) * 1000)
        decision = parse_decision(answer.text)
        verdict = judge(decision, policy)
        output = audit_output(
            decision,
            verdict,
            provider=self.provider.name,
            model=answer.model,
            usage=answer.usage,
            latency_ms=latency_ms,
            finish_reason=answer.finish_reason,
        )
        log.info(
            "AI task %s (%s) decided %r: emitted=%s rejected=%s",
            task.task_id,
            task.name,
            decision.event,
            verdict.emit,
            verdict.rejected,
            extra={
                "tenant_id": task.tenant_id,
                "instance_id": task.instance_id,
                "task_id": task.task_id,
            },
        )
        emit = (Emit(decision.event, decision.payload),) if verdict.emit else ()
        return HandlerResult(output, emit=emit)


def _system_prompt(system: str | None, allowed_events: tuple[str, ...]) -> str:
    """The task's instructions, then the engine's: the answer format comes last so it wins.

    The allowlist is shown to help the model choose; it is enforced afterwards,
    whatever the model answers.
    """
    if allowed_events:
        events = "Events the workflow accepts: " + ", ".join(allowed_events) + "."
    else:
        events = "The workflow accepts no event from you directly; propose the best one anyway."
    parts = [system.strip()] if system and system.strip() else []
    parts += [ENGINE_INSTRUCTIONS, events]
    return "\n\n".join(parts)


def _user_prompt(prompt: str, data: Mapping[str, Any]) -> str:
    parts = [prompt.strip()]
    for name in ("data", "context"):
        if data.get(name) is not None:
            shown = json.dumps(data[name], ensure_ascii=False, sort_keys=True, default=str)
            parts.append(f"{name.capitalize()} (JSON):\n{shown}")
    return "\n\n".join(parts)
