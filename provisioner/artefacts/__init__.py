"""What labs are made from, built offline: the guest image, the built-in container images, OCI
archives, and the registry they are put into."""
