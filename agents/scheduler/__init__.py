"""The scheduler: binds each pending pod to the node that fits it best."""
