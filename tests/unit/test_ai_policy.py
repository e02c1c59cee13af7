"""The AI task's guardrails as pure functions: every policy combination, every malformed answer."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from statefleet.engine.handlers.ai import AiSettings
from statefleet.engine.handlers.ai_policy import (
    MAX_RAW_CHARS,
    AiPolicy,
    Decision,
    InvalidPolicy,
    MalformedAnswer,
    Usage,
    Verdict,
    audit_output,
    judge,
    parse_decision,
    parse_policy,
)
from statefleet.engine.handlers.base import PermanentTaskError


def decision(event: str = "APPROVE", confidence: float = 0.9) -> Decision:
    return Decision(event=event, payload={"n": 1}, reason="looks fine", confidence=confidence)


def policy(**fields: Any) -> AiPolicy:
    return parse_policy({"allowedEvents": ["APPROVE", "REJECT"], **fields})


# --- judge: the whole matrix -------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "direct", "min_confidence", "human", "confidence"),
    list(
        itertools.product(
            [True, False],  # the event is in allowedEvents
            [True, False],  # allowDirectEmit
            [None, 0.5, 0.95],  # minConfidence
            [False, True],  # requireHumanApproval
            [0.0, 0.5, 0.9, 1.0],  # the decision's confidence
        )
    ),
)
def test_a_decision_is_emitted_only_when_every_guardrail_agrees(
    allowed: bool, direct: bool, min_confidence: float | None, human: bool, confidence: float
) -> None:
    rules = policy(allowDirectEmit=direct, requireHumanApproval=human, minConfidence=min_confidence)
    verdict = judge(decision("APPROVE" if allowed else "REFUND", confidence), rules)

    confident = min_confidence is None or confidence >= min_confidence
    assert verdict.emit == (allowed and direct and confident and not human)
    assert verdict.rejected == (not allowed or not confident)
    assert (verdict.reason is None) == verdict.emit
    assert len(verdict.reasons) == (not allowed) + (not confident) + human + (not direct)


def test_an_allowed_event_with_direct_emit_is_emitted() -> None:
    assert judge(decision(), policy(allowDirectEmit=True)) == Verdict(emit=True, rejected=False)


def test_an_allowed_event_without_direct_emit_is_held_not_rejected() -> None:
    verdict = judge(decision(), policy())
    assert (verdict.emit, verdict.rejected) == (False, False)
    assert verdict.reason == "allowDirectEmit is false: the worker may not emit the event"


def test_an_event_outside_the_allowlist_is_rejected_and_named() -> None:
    verdict = judge(decision("REFUND"), policy(allowDirectEmit=True))
    assert (verdict.emit, verdict.rejected) == (False, True)
    assert verdict.reason == ("event 'REFUND' is not in allowedEvents (allowed: APPROVE, REJECT)")


def test_a_confidence_below_the_minimum_is_rejected_and_equal_passes() -> None:
    low = judge(decision(confidence=0.79), policy(allowDirectEmit=True, minConfidence=0.8))
    equal = judge(decision(confidence=0.8), policy(allowDirectEmit=True, minConfidence=0.8))
    assert (low.emit, low.rejected) == (False, True)
    assert low.reason == "confidence 0.79 is below minConfidence 0.8"
    assert equal.emit


def test_require_human_approval_holds_even_an_allowed_confident_decision() -> None:
    verdict = judge(
        decision(confidence=1.0), policy(allowDirectEmit=True, requireHumanApproval=True)
    )
    assert (verdict.emit, verdict.rejected) == (False, False)
    assert verdict.reasons == ("requireHumanApproval: a person must approve the decision",)


def test_no_policy_at_all_emits_nothing() -> None:
    verdict = judge(decision(), parse_policy(None))
    assert (verdict.emit, verdict.rejected) == (False, True)
    assert verdict.reasons == (
        "event 'APPROVE' is not in allowedEvents (allowed: none)",
        "allowDirectEmit is false: the worker may not emit the event",
    )


def test_refusals_are_listed_before_holds() -> None:
    verdict = judge(
        decision("REFUND", 0.1),
        policy(minConfidence=0.5, requireHumanApproval=True),
    )
    assert [r.split(" ")[0] for r in verdict.reasons] == [
        "event",
        "confidence",
        "requireHumanApproval:",
        "allowDirectEmit",
    ]


# --- parse_policy ------------------------------------------------------------------------


def test_a_policy_reads_every_field_by_its_spec_name() -> None:
    parsed = parse_policy(
        {
            "allowedEvents": ["A"],
            "allowDirectEmit": True,
            "minConfidence": 0.7,
            "maxTokens": 200,
            "timeout": 1500,
            "requireHumanApproval": True,
        }
    )
    assert parsed == AiPolicy(
        allowed_events=("A",),
        allow_direct_emit=True,
        min_confidence=0.7,
        max_tokens=200,
        timeout_ms=1500,
        require_human_approval=True,
    )


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"allowedEvent": ["A"]}, "allowedEvent: Extra inputs are not permitted"),
        ({"allowDirectEmit": "true"}, "allowDirectEmit: Input should be a valid boolean"),
        ({"minConfidence": 1.5}, "minConfidence: Input should be less than or equal to 1"),
        ({"minConfidence": "0.5"}, "minConfidence: Input should be a valid number"),
        ({"maxTokens": 0}, "maxTokens: Input should be greater than 0"),
        ({"timeout": "PT5S"}, "timeout: Input should be a valid integer"),
        ({"allowedEvents": "A"}, "allowedEvents: Input should be a valid tuple"),
        ({"allowedEvents": [1]}, "allowedEvents.0: Input should be a valid string"),
    ],
)
def test_an_invalid_policy_is_refused_naming_the_field(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidPolicy) as caught:
        parse_policy(raw)
    assert problem in str(caught.value)


# --- parse_decision ----------------------------------------------------------------------


def test_a_valid_answer_becomes_a_decision() -> None:
    raw = json.dumps(
        {"event": "APPROVE", "payload": {"x": 1}, "reason": "ok", "confidence": 1, "extra": 2}
    )
    assert parse_decision(raw) == Decision(
        event="APPROVE", payload={"x": 1}, reason="ok", confidence=1.0
    )


def test_a_missing_payload_is_an_empty_one() -> None:
    raw = '{"event": "APPROVE", "reason": "ok", "confidence": 0.5}'
    assert parse_decision(raw).payload == {}


def test_an_answer_in_a_single_code_fence_is_read() -> None:
    raw = '```json\n{"event": "APPROVE", "reason": "ok", "confidence": 0.5}\n```'
    assert parse_decision(raw).event == "APPROVE"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("I think you should approve it.", "not JSON"),
        ("", "not JSON"),
        ('{"event": "APPROVE"', "not JSON"),
        ('["APPROVE"]', "a JSON list, not an object"),
        ('{"reason": "ok", "confidence": 0.5}', "event: Field required"),
        ('{"event": "", "reason": "ok", "confidence": 0.5}', "event: String should have at least"),
        ('{"event": 3, "reason": "ok", "confidence": 0.5}', "event: Input should be a valid str"),
        ('{"event": "A", "reason": "ok", "confidence": 1.7}', "confidence: Input should be less"),
        ('{"event": "A", "reason": "ok", "confidence": "high"}', "confidence: Input should be"),
        ('{"event": "A", "reason": "ok", "confidence": true}', "confidence: Input should be"),
        ('{"event": "A", "confidence": 0.5}', "reason: Field required"),
        ('{"event": "A", "reason": "ok", "confidence": 0.5, "payload": [1]}', "payload: Input"),
        ('Sure! ```json\n{"event": "A"}\n```', "not JSON"),
    ],
)
def test_a_malformed_answer_names_its_problem_and_keeps_the_raw_text(
    raw: str, problem: str
) -> None:
    with pytest.raises(MalformedAnswer) as caught:
        parse_decision(raw)
    assert problem in caught.value.problem
    assert caught.value.raw == raw
    assert str(caught.value).endswith(f"raw answer: {raw}")
    assert not isinstance(caught.value, PermanentTaskError)


def test_a_long_malformed_answer_is_truncated_in_the_message_not_in_the_exception() -> None:
    raw = "x" * (MAX_RAW_CHARS * 3)
    with pytest.raises(MalformedAnswer) as caught:
        parse_decision(raw)
    message = str(caught.value)
    assert message.endswith("x" * 100 + " ...[truncated]")
    assert len(message) < MAX_RAW_CHARS + 200
    assert caught.value.raw == raw


# --- audit_output ------------------------------------------------------------------------


def test_the_audit_output_records_the_decision_the_verdict_and_the_call() -> None:
    rejected = judge(decision("REFUND"), policy(allowDirectEmit=True))
    output = audit_output(
        decision("REFUND"),
        rejected,
        provider="openai",
        model="gpt-test",
        usage=Usage(12, 5),
        latency_ms=42,
        finish_reason="stop",
    )
    assert output == {
        "decision": {
            "event": "REFUND",
            "payload": {"n": 1},
            "reason": "looks fine",
            "confidence": 0.9,
        },
        "emitted": False,
        "rejected": True,
        "rejectionReason": "event 'REFUND' is not in allowedEvents (allowed: APPROVE, REJECT)",
        "provider": "openai",
        "model": "gpt-test",
        "usage": {"inputTokens": 12, "outputTokens": 5},
        "latencyMs": 42,
        "finishReason": "stop",
    }
    assert json.loads(json.dumps(output)) == output


# --- settings ----------------------------------------------------------------------------


def test_settings_come_from_the_environment_and_hide_the_key() -> None:
    settings = AiSettings.from_env(
        {
            "STATEFLEET_AI_PROVIDER": "Anthropic",
            "STATEFLEET_AI_BASE_URL": "http://127.0.0.1:9/",
            "ANTHROPIC_API_KEY": "sk-ant-secret",
            "OPENAI_API_KEY": "sk-openai-secret",
            "STATEFLEET_AI_MODEL": "claude-test",
            "STATEFLEET_AI_TIMEOUT_MS": "1500",
        }
    )
    assert settings == AiSettings(
        provider="anthropic",
        base_url="http://127.0.0.1:9/",
        api_key="sk-ant-secret",
        model="claude-test",
        timeout_ms=1500,
    )
    assert "secret" not in repr(settings)


def test_the_statefleet_key_wins_over_the_vendor_key() -> None:
    env = {"STATEFLEET_AI_API_KEY": "mine", "OPENAI_API_KEY": "theirs"}
    assert AiSettings.from_env(env).api_key == "mine"
    assert AiSettings.from_env({"OPENAI_API_KEY": "theirs"}).api_key == "theirs"
    assert AiSettings.from_env({}) == AiSettings()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"STATEFLEET_AI_PROVIDER": "gemini"}, "choose one of: openai, anthropic"),
        ({"STATEFLEET_AI_RESPONSE_FORMAT": "xml"}, "json_schema, json_object, none"),
        ({"STATEFLEET_AI_TIMEOUT_MS": "0"}, "positive number of milliseconds"),
    ],
)
def test_bad_settings_are_a_startup_error(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        AiSettings.from_env(env)


def test_a_hosted_api_without_a_key_is_a_permanent_error_a_local_server_needs_none() -> None:
    with pytest.raises(PermanentTaskError, match="set STATEFLEET_AI_API_KEY or OPENAI_API_KEY"):
        AiSettings().key_for_client()
    assert AiSettings(base_url="http://127.0.0.1:11434/v1").key_for_client() == "not-needed"
