"""The built-in consumer plug-ins, one module each; registering a consumer is one line here."""

from __future__ import annotations

from services.forms.consumers.base import ConsumerRegistry
from services.forms.consumers.confirm import ConfirmConsumer
from services.forms.consumers.screen import ScreenConsumer
from services.forms.consumers.sheets import SheetsConsumer
from services.forms.consumers.store import StoreConsumer


def default_registry() -> ConsumerRegistry:
    """Every built-in consumer."""
    registry = ConsumerRegistry()
    registry.register(StoreConsumer)
    registry.register(SheetsConsumer)
    registry.register(ScreenConsumer)
    registry.register(ConfirmConsumer)
    return registry
