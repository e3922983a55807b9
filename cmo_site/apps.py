from django.apps import AppConfig


class CmoSiteConfig(AppConfig):
    """The site itself: API tokens and the API's management commands."""

    name = "cmo_site"
    verbose_name = "API access"
