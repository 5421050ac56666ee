"""Deploy targets: where a deployment's replicas run (local processes, Kubernetes)."""
