"""All tables; importing this package registers every model on `Base.metadata`.

Every module in this package is imported, so a table added by any part of atb (run
records, sweeps, ...) is seen by `create_all`, Alembic's autogenerate and the schema check.
"""

import importlib
import pkgutil

from atb.db.models.base import Base
from atb.db.models.system_events import EventType, Severity, SystemEvent

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["Base", "EventType", "Severity", "SystemEvent"]
