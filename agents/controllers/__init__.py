"""The controller-manager: control loops that drive the cluster's actual state to the desired one."""
