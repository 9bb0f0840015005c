"""This machine, as the host side uses it: Debian packages it needs, processes it runs, waiting
with deadlines."""
