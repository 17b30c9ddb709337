"""The ingest service: vector collections, ingest jobs, snapshots."""
