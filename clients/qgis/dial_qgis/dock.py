"""The DIAL panel: thin widgets over :class:`Controller`."""
from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsSettings
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDockWidget, QFileDialog, QFormLayout,
                                 QGroupBox, QHBoxLayout, QLineEdit, QPushButton, QRadioButton, QVBoxLayout,
                                 QWidget)

from .connection import ConnectionSettings
from .map_tool import ClickTool


def _row(*widgets) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


class DialDock(QDockWidget):
    def __init__(self, controller, canvas, parent=None):
        super().__init__("DIAL", parent)
        self.controller, self.canvas = controller, canvas
        self.tool = ClickTool(canvas, controller.on_map_click)
        body = QWidget()
        main = QVBoxLayout(body)

        connect = QGroupBox("Connect")
        form = QFormLayout(connect)
        s = controller.ws.settings
        self.segmenter, self.adapter, self.acquisition = QLineEdit(s.segmenter), QLineEdit(s.adapter), QLineEdit(
            s.acquisition)
        self.tls, self.root_cert = QCheckBox("TLS"), QLineEdit(s.root_cert)
        self.tls.setChecked(s.tls)
        self.token = QLineEdit(s.token)
        self.token.setEchoMode(QLineEdit.Password)
        for label, widget in (("Segmenter", self.segmenter), ("Adapter", self.adapter),
                              ("Acquisition", self.acquisition), ("Root certificate", self.root_cert),
                              ("Token", self.token)):
            form.addRow(label, widget)
        check = QPushButton("Check")
        check.clicked.connect(self.check)
        form.addRow(self.tls, check)
        self.server_reads_file = QCheckBox("Adapter reads the layer's file (a shared path)")
        self.server_reads_file.setChecked(s.server_reads_file)
        form.addRow(self.server_reads_file)
        self.models = QComboBox()
        self.models.currentTextChanged.connect(self.choose_model)
        form.addRow("Model", self.models)
        main.addWidget(connect)

        work = QGroupBox("Segment and click")
        col = QVBoxLayout(work)
        self.layer = QgsMapLayerComboBox()
        self.layer.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer.layerChanged.connect(controller.choose_layer)
        col.addWidget(self.layer)
        col.addWidget(_row(self._button("Segment visible extent", lambda: controller.segment(visible=True)),
                           self._button("Whole layer", lambda: controller.segment(visible=False))))
        self.palette_box = QWidget()
        self.palette_layout = QVBoxLayout(self.palette_box)
        self.palette = QButtonGroup(self)
        self.palette.idClicked.connect(self.choose_class)
        col.addWidget(self.palette_box)
        self.click_button = self._button("Click tool", self.toggle_tool)
        self.click_button.setCheckable(True)
        col.addWidget(_row(self.click_button, self._button("Undo", controller.undo),
                           self._button("Redo", controller.redo)))
        main.addWidget(work)

        more = QGroupBox("Adapt, where next, export")
        col = QVBoxLayout(more)
        col.addWidget(_row(self._button("Start session", controller.adapt_start),
                           self._button("Adapt", controller.adapt)))
        col.addWidget(_row(self._button("Rank patches", controller.rank),
                           self._button("Next patch", controller.next_patch),
                           self._button("Done", controller.mark_done)))
        col.addWidget(self._button("Export GeoTIFF + GeoPackage", self.export))
        main.addWidget(more)
        main.addStretch(1)
        self.setWidget(body)

    def _button(self, text, slot) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(lambda *_: slot())
        return button

    def settings(self) -> ConnectionSettings:
        return ConnectionSettings(self.segmenter.text().strip(), self.adapter.text().strip(),
                                  self.acquisition.text().strip(), self.tls.isChecked(),
                                  self.root_cert.text().strip(), self.token.text(),
                                  self.server_reads_file.isChecked())

    def check(self) -> None:
        settings = self.settings()
        settings.save(QgsSettings())
        self.controller.ws.settings = settings
        models = self.controller.check()
        self.models.blockSignals(True)
        self.models.clear()
        self.models.addItems([m.label for m in models])
        self.models.blockSignals(False)
        if models:
            self.choose_model(models[0].label)
        self.controller.choose_layer(self.layer.currentLayer())

    def choose_model(self, label: str) -> None:
        if not label:
            return
        self.controller.choose_model(label)
        model = self.controller.ws.model
        if model is None:
            return
        self.models.blockSignals(True)
        self.models.setCurrentText(label)
        self.models.blockSignals(False)
        for button in self.palette.buttons():
            self.palette.removeButton(button)
            button.setParent(None)  # gone now, not at the next event loop turn
        for class_id, name, colour in model.classes:
            button = QRadioButton(name)
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(colour))
            button.setIcon(QIcon(swatch))
            self.palette.addButton(button, int(class_id))
            self.palette_layout.addWidget(button)
        if self.palette.buttons():
            self.palette.buttons()[0].setChecked(True)
            self.choose_class(int(model.classes[0][0]))

    def choose_class(self, class_id: int) -> None:
        self.controller.class_id = class_id

    def toggle_tool(self) -> None:
        if self.click_button.isChecked():
            self.canvas.setMapTool(self.tool)
        else:
            self.canvas.unsetMapTool(self.tool)

    def export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the class map to")
        if folder:
            self.controller.export(folder)
