"""What can go wrong when the gateway starts.

::

    GatewayError
    ├── EnvoyNotFoundError        no envoy binary next to Python or on PATH
    └── InvalidEnvoyConfigError   ``envoy --mode validate`` refused the rendered config
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the gateway's errors."""


class EnvoyNotFoundError(GatewayError):
    """No ``envoy`` binary was found."""


class InvalidEnvoyConfigError(GatewayError):
    """Envoy refused the rendered configuration; the message is Envoy's reason."""
