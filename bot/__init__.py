"""staffvoice core: platform-neutral conversations. Never imports a platform SDK."""
