"""Operator commands: ``regen-sync check`` (preflight), ``send`` (smoke-test events and
batches), ``redrive`` (republish dead letters) and ``trace`` (one event's story)."""

from regen_sync.operator.commands import add_operator_commands

__all__ = ["add_operator_commands"]
