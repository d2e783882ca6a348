"""Create local development credentials on first run and print them once."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Development only: create a local superuser (printed once)."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            self.stdout.write("Production mode: no development credentials are created.")
            return
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Local superuser exists (its password was printed when it was created).")
        else:
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", password)
            self.stdout.write(self.style.SUCCESS(
                f"Created local superuser for /admin/ - user: admin  password: {password}  (shown once)"
            ))
