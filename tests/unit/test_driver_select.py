"""Queue driver selection: ``WORKFLOW_QUEUE_DRIVER``, else BullMQ for Redis or production."""

from __future__ import annotations

import pytest

from statefleet.drivers import (
    MemoryQueue,
    QueueConfigError,
    create_queue,
    select_driver,
)


@pytest.mark.parametrize(
    ("env", "driver"),
    [
        ({}, "memory"),
        ({"WORKFLOW_QUEUE_DRIVER": "memory"}, "memory"),
        ({"WORKFLOW_QUEUE_DRIVER": "bullmq"}, "bullmq"),
        ({"WORKFLOW_QUEUE_DRIVER": "cloudtasks"}, "cloudtasks"),
        ({"WORKFLOW_QUEUE_DRIVER": " CloudTasks\n"}, "cloudtasks"),
        ({"REDIS_URL": "redis://localhost:6379/0"}, "bullmq"),
        ({"APP_ENV": "production"}, "bullmq"),
        ({"APP_ENV": "Production"}, "bullmq"),
        ({"APP_ENV": "staging"}, "memory"),
        ({"APP_ENV": "development", "REDIS_URL": ""}, "memory"),
        # An explicit choice beats both defaults.
        ({"WORKFLOW_QUEUE_DRIVER": "memory", "REDIS_URL": "redis://r"}, "memory"),
        ({"WORKFLOW_QUEUE_DRIVER": "cloudtasks", "APP_ENV": "production"}, "cloudtasks"),
        # An empty variable counts as unset (docker-compose's `VAR=`).
        ({"WORKFLOW_QUEUE_DRIVER": "", "REDIS_URL": "redis://r"}, "bullmq"),
        ({"WORKFLOW_QUEUE_DRIVER": "  "}, "memory"),
    ],
)
def test_select_driver(env: dict[str, str], driver: str) -> None:
    assert select_driver(env) == driver


@pytest.mark.parametrize("value", ["redis", "bull", "sqs", "memory,bullmq"])
def test_an_unknown_driver_names_the_variable_and_the_valid_values(value: str) -> None:
    with pytest.raises(QueueConfigError) as caught:
        select_driver({"WORKFLOW_QUEUE_DRIVER": value, "REDIS_URL": "redis://r"})
    message = str(caught.value)
    assert "WORKFLOW_QUEUE_DRIVER" in message
    assert repr(value) in message
    assert "bullmq, cloudtasks, memory" in message


def test_select_driver_reads_only_the_mapping_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_QUEUE_DRIVER", "bullmq")
    monkeypatch.setenv("REDIS_URL", "redis://r")
    assert select_driver({}) == "memory"


def test_create_queue_builds_the_memory_driver() -> None:
    assert isinstance(create_queue({"WORKFLOW_QUEUE_DRIVER": "memory"}), MemoryQueue)


def test_create_queue_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKFLOW_QUEUE_DRIVER", "memory")
    monkeypatch.setenv("REDIS_URL", "redis://r")
    assert isinstance(create_queue(), MemoryQueue)


def test_create_queue_builds_the_bullmq_driver_without_connecting() -> None:
    from statefleet.drivers.bullmq import BullMQQueue

    queue = create_queue({"REDIS_URL": "redis://r:6380/2", "WORKFLOW_BULLMQ_PREFIX": "acme"})
    assert isinstance(queue, BullMQQueue)
    assert (queue.redis_url, queue.prefix) == ("redis://r:6380/2", "acme")
    default = create_queue({"WORKFLOW_QUEUE_DRIVER": "bullmq"})
    assert isinstance(default, BullMQQueue)
    assert (default.redis_url, default.prefix) == ("redis://localhost:6379", "bull")


def test_an_unknown_driver_fails_before_anything_is_built() -> None:
    with pytest.raises(QueueConfigError):
        create_queue({"WORKFLOW_QUEUE_DRIVER": "kafka"})
    assert issubclass(QueueConfigError, ValueError)
