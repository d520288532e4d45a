"""DIAL's gRPC services, installed as the ``dial_services`` package.

Each service is a thin translation between the ``dial.v1`` protobuf API and
the ``dial`` core library, plus configuration, health and metrics.
"""
