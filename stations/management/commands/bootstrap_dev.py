"""Create local development credentials on first run and print them once."""
# Lives in stations/ only because it runs first; it creates the admin user, the
# mobile API test key of the customer's documents and, unless the operator has
# set tariffs, the documents' example tariff (so costs are numbers, not null).

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Development only: create a local superuser (printed once) and the documents' test API key."

    def handle(self, *args: Any, **options: Any) -> None:
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
        self._test_api_key()
        self._default_tariff()

    def _test_api_key(self) -> None:
        from mobileapi.models import APP_SCOPES, ApiKey, hash_key
        from mobileapi.services import create_api_key

        raw = settings.MOBILE_DEV_API_KEY
        if not raw or ApiKey.objects.filter(key_hash=hash_key(raw)).exists():
            return
        create_api_key("Documents' test key (development)", list(APP_SCOPES), raw_key=raw)
        self.stdout.write(self.style.SUCCESS(
            f"Created the mobile API test key {raw} with scopes {', '.join(APP_SCOPES)} "
            "(development only: CSMS_ENV=production refuses it and warns while it is in the database)"
        ))

    def _default_tariff(self) -> None:
        from stations.models import Tariff

        if Tariff.objects.exists():  # the operator's tariffs (or this one, from an earlier run)
            return
        # 0.10 EUR/kWh: the documents' example (1.55 for 15,500 Wh).
        Tariff.objects.create(name="Development default", price_per_kwh=Decimal("0.10"), currency="EUR",
                              is_default=True)
        self.stdout.write(self.style.SUCCESS(
            "Created the default tariff 0.10 EUR/kWh (development only; set real tariffs in /admin/ > Tariffs)"
        ))
