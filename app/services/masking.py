"""Credentials shown as the mask, and the mask sent back."""

from __future__ import annotations

from typing import Any

from app.probes.urls import MASK


def restore_masked(sent: Any, stored: Any) -> Any:
    """``sent`` with every mask replaced by the stored value in its place — a key or a list
    position, at any depth — so a client that sends back what it was shown keeps the
    credentials it never saw."""
    if sent == MASK and isinstance(stored, str):
        return stored
    if isinstance(sent, dict) and isinstance(stored, dict):
        return {key: restore_masked(value, stored[key]) if key in stored else value for key, value in sent.items()}
    if isinstance(sent, list) and isinstance(stored, list):
        return [restore_masked(value, stored[index]) if index < len(stored) else value
                for index, value in enumerate(sent)]
    return sent
