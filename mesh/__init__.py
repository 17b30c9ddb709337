"""Running the mesh: dependencies, the local supervisor, the gateway catalog."""
