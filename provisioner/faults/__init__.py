"""Breaking a lab on purpose: ``plan`` decides (pure), ``executor`` carries it out through a driver."""
