"""The ``kubelab`` command."""
