"""Failure-injection rules of the sandbox (POST /_sandbox/faults) and how requests pick one."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from http import HTTPStatus
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

Operation = Literal["token", "billing", "booking", "invoice", "journal"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
ZUORA_OPERATIONS: frozenset[Operation] = frozenset({"billing", "booking", "invoice"})


class _Rule(BaseModel):
    # Forbidding unknown fields turns a misspelt knob in a test into an error instead of a
    # rule that silently does something else.
    model_config = ConfigDict(extra="forbid", frozen=True)

    times: int | None = Field(default=None, ge=1)
    match: str | None = Field(default=None, min_length=1)


class _AnsweringRule(_Rule):
    retry_after: float | None = Field(default=None, ge=0, alias="retryAfter")
    code: str | None = Field(default=None, min_length=1)
    message: str | None = None


class StatusFault(_AnsweringRule):
    """Answers `status` with the operation's error body instead of processing the request."""

    operation: Operation | Literal["*"]
    kind: Literal["status"]
    status: int = Field(ge=400, le=599)

    @field_validator("status")
    @classmethod
    def _known_status(cls, status: int) -> int:
        # Error bodies carry the status' reason phrase, so it must be one HTTPStatus knows.
        HTTPStatus(status)
        return status


class SuccessFalseFault(_AnsweringRule):
    """Answers 200 with the operation's success:false body; only Zuora operations have one."""

    operation: Literal["billing", "booking", "invoice", "*"]
    kind: Literal["success_false"]


class LatencyFault(_Rule):
    """Delays the answer by `latency_ms` on top of the base latency, then answers normally."""

    operation: Operation | Literal["*"]
    kind: Literal["latency"]
    latency_ms: int = Field(ge=0, alias="latencyMs")


FaultRule = Annotated[StatusFault | SuccessFalseFault | LatencyFault, Field(discriminator="kind")]
FAULT_RULE: TypeAdapter[FaultRule] = TypeAdapter(FaultRule)


@dataclass
class Fault:
    """A rule armed in the sandbox; `remaining` is None when it lasts until cleared."""

    id: str
    rule: FaultRule
    remaining: int | None

    def matches(self, operation: Operation, path: str, body: str) -> bool:
        rule = self.rule
        if rule.operation == "*":
            if isinstance(rule, SuccessFalseFault) and operation not in ZUORA_OPERATIONS:
                return False
        elif rule.operation != operation:
            return False
        return rule.match is None or rule.match in path or rule.match in body


class FaultBook:
    """Armed rules in creation order: the first one matching a request applies to it."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, rule: FaultRule) -> str:
        fault = Fault(f"fault-{next(self._ids)}", rule, rule.times)
        self._faults.append(fault)
        return fault.id

    def clear(self) -> None:
        self._faults.clear()

    def take(self, operation: Operation, path: str, body: str) -> Fault | None:
        """The fault to apply to this request, using up one of its `times`."""
        fault = next((f for f in self._faults if f.matches(operation, path, body)), None)
        if fault is not None and fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
        return fault
