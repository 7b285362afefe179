"""All tables; importing this package registers every model on `Base.metadata`."""

from atb.db.models.base import Base

__all__ = ["Base"]
