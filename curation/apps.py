from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CurationConfig(AppConfig):
    name = "curation"
    verbose_name = "START curation"

    def ready(self) -> None:
        from curation.roles import sync_roles
        from curation.services import hint_templates_seed

        post_migrate.connect(sync_roles, sender=self)
        post_migrate.connect(hint_templates_seed, sender=self)
