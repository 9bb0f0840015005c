"""The local driver: the same agents as processes on this host."""
