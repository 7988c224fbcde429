"""The application layer: the `staffvoice` command line and the `serve` composition.

It is the only layer that knows every other one. It may import `bot/` (the platform-neutral
core), `storage/` and `adapters/`; nothing imports it (see docs/architecture.md).
"""
