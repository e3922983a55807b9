"""The hooks' pages under /hooks/."""

from __future__ import annotations

from django.urls import URLPattern, path

from hooks import views

app_name = "hooks"
urlpatterns: list[URLPattern] = [
    path("", views.hook_list, name="list"),
    path("new/", views.hook_new, name="new"),
    path("<slug:name>/", views.hook_detail, name="detail"),
    path("<slug:name>/rotate/", views.hook_rotate, name="rotate"),
    path("<slug:name>/enable/", views.hook_enable, name="enable"),
]
