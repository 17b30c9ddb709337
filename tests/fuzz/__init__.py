"""The fuzz suite: every RPC of every service, generated and mutated requests, gRPC-web bodies."""
