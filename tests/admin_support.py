"""Staff personas for the admin tests."""

from __future__ import annotations

from django.contrib.auth.models import Group, User

PASSWORD = "correct-horse-battery-staple-42"


def make_superuser(username: str = "root") -> User:
    return User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)


def make_support(username: str = "agent") -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="support"))
    return user
