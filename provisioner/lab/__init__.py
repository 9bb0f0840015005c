"""The lab model: what a lab is (spec), where its files live (paths), its identities (PKI,
kubeconfigs), how its files are generated (render) and which unit runs each component."""
