"""Reports: pulse results, trends, exports and the leadership digest, all through the anonymity engine."""
