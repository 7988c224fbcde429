"""Console adapter: a real chat with the core in a terminal, or piped through stdin."""
