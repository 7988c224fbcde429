"""Milestones and check-ins: the roadmap in chat, kept true by its owners."""
