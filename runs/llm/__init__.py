"""Model calls as first-class activities: ``ctx.activities.llm(...)``.

A chat completion through a named provider (``settings.CMO_LLM_PROVIDERS``), made with the official
client (``openai`` for OpenAI and every OpenAI-compatible server, ``anthropic`` for Anthropic), recorded
once like any activity: the request (redacted), the response (text, tool calls, finish reason), usage,
latency, time to first token and cost from the provider's price table. A replay, verify or fork returns
the record and costs nothing.

- providers: the configuration (kind, base URL, the secret holding the key, default model, prices).
- clients: the two wire formats behind one request/response shape, streaming included.
- usage: the run's spend and budget, and the daily totals /metrics and the dashboard read.
- conversation: a recorded call as chat messages, for the pages.
"""
