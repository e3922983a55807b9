"""The schedules' pages under /schedules/."""

from __future__ import annotations

from django.urls import path

from schedules import views

app_name = "schedules"
urlpatterns = [
    path("", views.schedule_list, name="list"),
    path("new/", views.schedule_new, name="new"),
    path("<slug:name>/", views.schedule_detail, name="detail"),
    path("<slug:name>/edit/", views.schedule_edit, name="edit"),
    path("<slug:name>/backfill/", views.schedule_backfill, name="backfill"),
    path("<slug:name>/<str:action>/", views.schedule_action, name="action"),
]
