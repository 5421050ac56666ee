"""The gateway's settings."""

from __future__ import annotations

from loopml.settings import GatewaySettings

GatewayConfig = GatewaySettings
"""Timeouts and bounds of the gateway: the ``gateway`` section of the settings tree
(``LOOPML_GATEWAY_*``, ``[gateway]`` in loopml.toml); see docs/configuration.md."""
