"""Specialists: the registry of who nodes may call (registry), agent-to-agent messages over Redis Streams
(a2a, streams, envelopes), and how a specialist process announces itself (announce). The in-process
``@specialist`` functions are the engine's (runs.engine.specialists); ``send_a2a`` is runs.activities.specialists."""
