"""What every app shares and no app owns: roles and grants, the API's authentication and error shape, the
live-update protocol, API tokens, telemetry, logging, health checks and settings helpers.

These modules import no app (import-linter contract in pyproject.toml): apps import them, never the reverse.
The rest of ``cmo_site`` (urls, api, asgi, routing, prometheus, views) is the top: it assembles the apps.
"""
