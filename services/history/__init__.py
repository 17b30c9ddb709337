"""The history service: conversations, messages, read pointers (CQL) and their fanout."""
