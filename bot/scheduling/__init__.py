"""Scheduling: when each feature's due work runs, on one leader among replicas."""
