"""The trace collector: receives the components' spans over OTLP/HTTP, keeps the recent ones in memory
and answers for one trace or the latest ones (``kubelab trace`` and the dashboard ask it through the
API server's service proxy)."""
