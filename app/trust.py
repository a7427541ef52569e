"""The one question LayerScope asks before a file's own code runs: "run its code?", default No.

Opening never runs a file's code; running a model that carries code (a pickled nn.Module, a Keras Lambda)
does. The runner refuses such a request untrusted (TrustRequired); the features that send requests
(Explain, Attention, compare) turn that refusal into this question, trust the session on yes, and send the
same request again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from analyzers.errors import TrustRequired
from analyzers.tasks import CancelToken, Steps


@dataclass(frozen=True)
class NeedsTrust:
    """A request the runner refused because it would run the file's code: what it said, and how to retry."""

    message: str
    retry: Callable[[], Any]


def trusted_request(runner: Any, op: str, token: CancelToken, ref: Any, retry: Callable[[], Any],
                    **payload: Any) -> Steps[Any]:
    """A runner request whose TrustRequired comes back as NeedsTrust (asked about on the GUI thread)."""
    try:
        return (yield from runner.request(op, token, ref.path, ref=ref, **payload))
    except TrustRequired as exc:
        return NeedsTrust(str(exc), retry)


class TrustQuestion(QObject):
    """Asks whether the session's file may run its code; on yes, trusts the session and retries."""

    answered = Signal(bool)  # True when the user chose to run the code

    def __init__(self, window: Any, session: Any) -> None:
        super().__init__(window)
        self.window = window
        self.session = session
        self.dialog: Any = None  # the open question, if any (tests press its buttons)
        self._request: NeedsTrust | None = None

    def ask(self, request: NeedsTrust) -> None:
        """Open the question (window-modal, not blocking); a --screenshot window reports the refusal instead."""
        if not getattr(self.window, "interactive", True):
            self.window.show_error(request.message)
            self.answered.emit(False)
            return
        from widgets.trust_dialog import TrustDialog

        self._request = request
        self.dialog = TrustDialog(self.session.path, request.message, self.window, action="run")
        self.dialog.finished.connect(self._on_answer)
        self.dialog.open()

    def _on_answer(self, _result: int) -> None:
        dialog, request = self.dialog, self._request
        self.dialog, self._request = None, None
        if dialog is None or request is None or not dialog.trusted():
            self.answered.emit(False)
            return
        self.session.grant_trust()
        self.answered.emit(True)
        request.retry()
