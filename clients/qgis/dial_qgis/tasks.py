"""Long work as a QgsTask: a progress bar in QGIS's task manager, a cancel button, no frozen interface."""
from __future__ import annotations

from qgis.core import QgsTask


class DialTask(QgsTask):
    """Runs ``work(progress, cancelled)`` off the main thread; ``done(result, error)`` runs on it afterwards."""

    def __init__(self, description: str, work, done):
        super().__init__(description, QgsTask.CanCancel)
        self._work, self._done = work, done
        self.result = None
        self.error: BaseException | None = None

    def run(self) -> bool:
        try:
            self.result = self._work(self.setProgress, self.isCanceled)
            return True
        except BaseException as error:  # noqa: BLE001 - shown as a message by done()
            self.error = error
            return False

    def finished(self, ok: bool) -> None:
        self._done(self.result if ok else None, self.error)
