"""The status bar's job indicator: what runs, how far it got, and a Cancel button."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy, QWidget

from analyzers.tasks import Progress
from app.workers import JobRunner

STEPS = 1000


class JobStatus(QWidget):
    """Shows the newest running job of a JobRunner; Cancel cancels it. Hidden when nothing runs."""

    def __init__(self, jobs: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.label = QLabel(self)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, STEPS)
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(False)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop this job; what was shown before stays")
        self.cancel_button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self._labels: dict[int, str] = {}
        self._current: int | None = None
        jobs.started.connect(self._on_started)
        jobs.progress.connect(self._on_progress)
        jobs.finished.connect(self._on_end)
        jobs.failed.connect(self._on_end)
        jobs.cancelled.connect(self._on_end)
        self.cancel_button.clicked.connect(self.cancel_current)
        self.hide()

    @property
    def current(self) -> int | None:
        """The job shown."""
        return self._current

    def cancel_current(self) -> None:
        """Cancel the job shown."""
        if self._current is not None:
            self.jobs.cancel(self._current)

    def _on_started(self, job_id: int, label: str) -> None:
        self._labels[job_id] = label
        self._current = job_id
        self.label.setText(label + "…")
        self.bar.setRange(0, 0)  # busy until the first progress with a total
        self.show()

    def _on_progress(self, job_id: int, progress: object) -> None:
        if job_id != self._current or not isinstance(progress, Progress):
            return
        frac = progress.fraction
        if frac is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, STEPS)
            self.bar.setValue(round(frac * STEPS))
        text = progress.text or self._labels.get(job_id, "")
        self.label.setText(text[:90])

    def _on_end(self, job_id: int, *_: object) -> None:
        self._labels.pop(job_id, None)
        if job_id != self._current:
            return
        live = [j for j in self.jobs.active() if j in self._labels and j != job_id]
        if live:
            self._current = live[-1]
            self.label.setText(self._labels[self._current] + "…")
            self.bar.setRange(0, 0)
        else:
            self._current = None
            self.hide()
