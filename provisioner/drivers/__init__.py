"""Drivers: how a lab's machines come to exist (processes on this host, or VMs)."""
