"""The access tests run against SSO-enabled gateways: reuse the SSO fixtures."""

from tests.sso.conftest import gateway_cert, start_sso_gateway  # noqa: F401
