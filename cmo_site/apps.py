from django.apps import AppConfig


class CmoSiteConfig(AppConfig):
    """The site itself: API tokens and the API's management commands."""

    name = "cmo_site"
    verbose_name = "API access"

    def ready(self) -> None:
        from cmo_site import checks  # noqa: F401 - registers the deploy checks (metrics token, OTel exporter)
