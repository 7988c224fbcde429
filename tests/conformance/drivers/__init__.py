"""One driver per adapter. Each module defines `make(core) -> Driver` (async)."""
