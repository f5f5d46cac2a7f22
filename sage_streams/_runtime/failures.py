"""The runtime's internal failure type: an error carried out of an operator's task."""

from __future__ import annotations

from sage_streams.errors import _error_text, _short_repr

__all__ = ["OperatorFailure"]


class OperatorFailure(Exception):
    """Internal: carries an error out of an operator's task with where it happened.

    The runtime raises it inside the task group and unwraps it into a :class:`PipelineError`;
    users never see it.
    """

    def __init__(self, operator: str, error: BaseException, item: object = None) -> None:
        super().__init__(operator, error, item)
        self.operator = operator
        self.error = error
        self.item = item

    def describe(self) -> str:
        """Say in one line which operator failed, how, and on what."""
        where = f"operator {self.operator!r} failed"
        what = _error_text(self.error)
        if self.item is None:
            return f"{where}: {what}"
        return f"{where} on item {_short_repr(self.item)}: {what}"
