"""The kubelet: the pods bound to this node -> containers in containerd, and their status back."""
