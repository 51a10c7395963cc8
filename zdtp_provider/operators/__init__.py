"""Operators: thin wrappers that build manifests (zdtp_provider.k8s), apply them, wait, report."""
