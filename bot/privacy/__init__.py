"""Data protection: retention, erasure, subject access and the privacy notice (issue 21)."""
