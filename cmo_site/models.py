"""The site's models, defined in cmo_site.shared (so shared code uses them without importing up to the site)."""

from cmo_site.shared.models import ApiToken

__all__ = ["ApiToken"]
