"""Operator commands: ``regen-sync check`` (preflight) and ``regen-sync send`` (smoke-test
events)."""

from regen_sync.operator.commands import add_operator_commands, run_operator_command

__all__ = ["add_operator_commands", "run_operator_command"]
