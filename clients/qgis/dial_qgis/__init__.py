"""DIAL for QGIS: the plugin's entry point.

QGIS calls :func:`classFactory`. The vendored DIAL client (with its own
grpcio and protobuf, which QGIS's Python lacks or has in too old a version)
is put on ``sys.path`` first.
"""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from . import bootstrap

    bootstrap.activate()
    from .plugin import DialPlugin

    return DialPlugin(iface)
