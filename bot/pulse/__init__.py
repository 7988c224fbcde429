"""Pulse surveys."""
