"""The vector store behind the ingest service: one interface (base.py), one module a backend."""
