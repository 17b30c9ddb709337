"""The presence service: heartbeats folded per user, last seen, typing."""
