"""Everything that runs on the nodes: the control plane and the node agents."""
