from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from cmo_site.shared.health import health

admin.site.site_header = "CMO administration"
admin.site.site_title = "CMO"

urlpatterns = [
    path("health", health, name="health"),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include("cmo_site.api_urls")),
    path("", include("cmo_site.ops_urls")),
    path("approvals/", include("approvals.urls")),
    path("schedules/", include("schedules.urls")),
    path("hooks/", include("hooks.urls")),
    path("", include("replay.urls")),
    path("", include("runs.urls")),
]

handler403 = "cmo_site.shared.error_pages.permission_denied"
handler404 = "cmo_site.shared.error_pages.page_not_found"
