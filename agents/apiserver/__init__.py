"""The API server: the Kubernetes REST API over etcd, for the real kubectl and client libraries."""
