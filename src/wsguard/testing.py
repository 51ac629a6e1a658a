"""Helpers for testing applications (and wsguard itself) against a real loopback server.

Relaxations are never implicit: ``loopback_settings`` only changes what a loopback test needs
(port 0) plus exactly the overrides you pass.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from wsguard.settings import Settings

__all__ = ["loopback_settings"]


def loopback_settings(base: Settings | None = None, **sections: Any) -> Settings:
    """Settings for a server on 127.0.0.1 with an OS-chosen port.

    Args:
        base: settings to start from (defaults: the secure defaults).
        **sections: per-section field overrides, e.g.
            ``loopback_settings(auth={"required": False}, limits={"max_connections_per_ip": 2})``;
            ``channels=[ChannelConfig(...), ...]`` replaces the channel rules.
    """
    settings = base or Settings()
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, host="127.0.0.1", port=0)
    )
    for section, fields in sections.items():
        if section == "channels":
            # An array of tables: a sequence of ChannelConfig, replacing the rules.
            settings = dataclasses.replace(settings, channels=tuple(fields))
            continue
        current = getattr(settings, section)
        settings = dataclasses.replace(
            settings, **{section: dataclasses.replace(current, **fields)}
        )
    return settings
