"""Fixtures for the drill tests: the end-to-end gateway factory."""

from tests.e2e.conftest import start_gateway

__all__ = ["start_gateway"]
