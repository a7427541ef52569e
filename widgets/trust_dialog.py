"""Asks before running code a file holds (a pickled module, a Keras Lambda); explains the risk; the default is no."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget

RISK = (
    "Unpickling it runs that code on this computer with your permissions: code in a pickle can read, "
    "change or delete your files, install software or send data over the network, and nothing shows "
    "that it did. Open it only if you made the file yourself or fully trust where it came from.\n\n"
    "Safer alternatives: a state_dict saved with torch.save(model.state_dict()), or a safetensors file, "
    "opens without this question."
)


class TrustDialog(QMessageBox):
    """The question 'run the code in this file?', answered No unless the user picks Open."""

    def __init__(self, path: Path | str, message: str, parent: QWidget | None = None, action: str = "open") -> None:
        super().__init__(parent)
        self.path = Path(path)
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle("Run code from this file?")
        self.setText(f"<b>{self.path.name}</b> contains Python code, not just weights."
                     + (" LayerScope showed its layers without running it; running the model runs that code."
                        if action == "run" else ""))
        self.setInformativeText(RISK)
        self.setDetailedText(message)
        yes, no = (("Run its code", "Don't run") if action == "run" else ("Open and run its code", "Don't open"))
        self.open_button = self.addButton(yes, QMessageBox.ButtonRole.AcceptRole)
        self.no_button = self.addButton(no, QMessageBox.ButtonRole.RejectRole)
        self.setDefaultButton(self.no_button)
        self.setEscapeButton(self.no_button)

    def trusted(self) -> bool:
        """True only when the user clicked the Open button."""
        return self.clickedButton() is self.open_button


def ask_trust(path: Path | str, message: str, parent: QWidget | None = None) -> bool:
    """Modal variant: show the dialog and wait; True when the user chose to open the file."""
    dialog = TrustDialog(path, message, parent)
    dialog.exec()
    return dialog.trusted()
