"""What every chatmesh service stands on: bootstrap, settings, auth, errors, metrics."""
