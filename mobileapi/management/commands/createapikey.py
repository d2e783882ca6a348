"""python manage.py createapikey --name N [--key K] --scopes a,b [--id-tags t1,t2]"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mobileapi import services
from mobileapi.models import APP_SCOPES, ApiKey, Scope, hash_key


class Command(BaseCommand):
    help = "Create a mobile API key and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--key", help="Use this key instead of a generated one")
        parser.add_argument("--scopes", default=",".join(APP_SCOPES),
                            help=f"Comma-separated, of {', '.join(Scope.values)} (default: %(default)s; "
                                 f"{Scope.OPERATE_STATIONS.value} only for a back-office integration's key)")
        parser.add_argument("--id-tags", default="", help="Comma-separated idTags bound to the key")

    def handle(self, *args: Any, **options: Any) -> None:
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        id_tags = [t.strip() for t in options["id_tags"].split(",") if t.strip()]
        if options["key"] and ApiKey.objects.filter(key_hash=hash_key(options["key"])).exists():
            raise CommandError("A key with that value exists already")
        try:
            key, raw = services.create_api_key(options["name"], scopes, id_tags, options["key"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"API key {key.name!r} (id {key.pk}, scopes {', '.join(key.scopes)}): {raw}")
        self.stdout.write("It is shown only now; store it safely.")
