"""Package layout: ``dial`` (the core) from ./dial and ``dial_services`` from ./services.

The folders are named for what they are; the import name ``dial_services``
keeps the service code out of the generic top-level name ``services``.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["dial", "dial.*"])
    + ["dial_services"]
    + [f"dial_services.{p}" for p in find_packages("services")],
    package_dir={"dial_services": "services"},
)
