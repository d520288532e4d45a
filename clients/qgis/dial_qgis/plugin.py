"""The plugin object QGIS loads: a toolbar action that shows the DIAL panel."""
from __future__ import annotations

from qgis.core import Qgis, QgsProject, QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from . import bootstrap

LEVELS = {"info": Qgis.Info, "success": Qgis.Success, "warning": Qgis.Warning}


class DialPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.action = None
        self.dock = None
        self.controller = None

    def notify(self, level: str, text: str) -> None:
        self.iface.messageBar().pushMessage("DIAL", text, level=LEVELS.get(level, Qgis.Info), duration=8)

    def initGui(self) -> None:  # noqa: N802 - QGIS's name
        self.action = QAction("DIAL", self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.triggered.connect(self.toggle)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToRasterMenu("DIAL", self.action)

    def toggle(self, checked: bool = True):
        problem = bootstrap.client_problem()
        if problem:
            self.notify("warning", problem)
            self.action.setChecked(False)
            return None
        if self.dock is None:
            from .connection import ConnectionSettings
            from .controller import Controller
            from .dock import DialDock

            self.controller = Controller(QgsProject.instance(), self.iface.mapCanvas(), self.notify,
                                         ConnectionSettings.load(QgsSettings()))
            self.dock = DialDock(self.controller, self.iface.mapCanvas(), self.iface.mainWindow())
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.setVisible(checked)
        return self.dock

    def unload(self) -> None:
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
        if self.action is not None:
            self.iface.removePluginRasterMenu("DIAL", self.action)
            self.iface.removeToolBarIcon(self.action)
