"""The lab's add-ons: cluster workloads in kube-system (DNS, ...) from manifests in addons/, kept
converged by kubelab (catalog: what they are; manager: applying and removing them)."""
