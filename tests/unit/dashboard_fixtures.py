"""Users with roles and signed-in clients for the dashboard tests."""

from __future__ import annotations

from django.contrib.auth.models import Group, User
from django.test import Client

PASSWORD = "pw-for-dashboard-tests"


def make_user(role: str) -> User:
    user = User.objects.create_user(role, password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


def client_for(role: str) -> Client:
    if not User.objects.filter(username=role).exists():
        make_user(role)
    client = Client(enforce_csrf_checks=False)
    assert client.login(username=role, password=PASSWORD)
    return client
