"""Real dependencies (NATS, Cassandra, Envoy) as processes the project starts itself."""
