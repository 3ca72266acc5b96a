from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CurationConfig(AppConfig):
    name = "curation"
    verbose_name = "START curation"

    def ready(self) -> None:
        from curation.roles import sync_roles

        post_migrate.connect(sync_roles, sender=self)
