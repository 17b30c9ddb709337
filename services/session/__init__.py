"""The session service: accounts, tokens, devices, and each device's event stream."""
