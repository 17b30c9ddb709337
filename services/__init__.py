"""chatmesh services: one package a service, all standing on services.runtime."""
