"""All tables; importing this package registers every model on `Base.metadata`."""

import importlib

from atb.db.models.base import Base
from atb.db.models.sweeps import Sweep
from atb.db.models.system_events import EventType, Severity, SystemEvent

__all__ = ["Base", "EventType", "Severity", "Sweep", "SystemEvent"]

# The run-record tables (runs, trades, orders, positions, account history, predictions,
# decisions) belong to the engine; register them when that module is present so
# migrations and `create_all` see one schema.
try:
    importlib.import_module("atb.db.models.run_records")
except ModuleNotFoundError as exc:  # pragma: no cover - only before the engine lands
    if exc.name != "atb.db.models.run_records":
        raise
