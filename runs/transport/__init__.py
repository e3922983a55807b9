"""Transports that carry envelopes to specialists (Redis Streams; in-process for the embedded mode)."""
