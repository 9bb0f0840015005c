"""Host side of kubelab: lab spec, drivers, certificates, kubeconfig and the CLI."""
