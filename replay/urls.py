"""Replay pages: verify, compare, fork, export."""

from django.urls import URLPattern, URLResolver

app_name = "replay"

urlpatterns: list[URLPattern | URLResolver] = []
