"""Storage: SQLAlchemy 2 async engine, declarative base and migrations."""

from storage.base import Base, UTCDateTime, new_id
from storage.db import Database

__all__ = ["Base", "Database", "UTCDateTime", "new_id"]
