"""Simulated nodes: kubelet-shaped agents without containers, to watch scheduling at scale."""
