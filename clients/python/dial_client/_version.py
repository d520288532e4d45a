"""The client's version; read by setuptools at build time without importing the package."""
__version__ = "0.1.0"
