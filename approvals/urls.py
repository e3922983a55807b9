"""Approvals inbox pages."""

from django.urls import URLPattern, URLResolver, path

from approvals import views

app_name = "approvals"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", views.inbox, name="inbox"),
    path("history/", views.history, name="history"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/row/", views.inbox_row, name="row"),
    path("<int:pk>/decide/", views.decide, name="decide"),
]
