"""Replay pages: verify, compare, fork, export, import.

Included before runs.urls, so ``runs/import/`` is matched here before ``runs/<trace_id>/`` sees it.
"""

from django.urls import path

from replay import views

app_name = "replay"

urlpatterns = [
    path("compare/", views.compare, name="compare"),
    path("runs/import/", views.run_import_view, name="run_import"),
    path("runs/<str:trace_id>/verify/", views.run_verify_view, name="run_verify"),
    path("runs/<str:trace_id>/fork/", views.run_fork_view, name="run_fork"),
    path("runs/<str:trace_id>/export/", views.run_export_view, name="run_export"),
]
