"""The inference service: llama.cpp models, generation slots, streaming replies, embeddings."""
