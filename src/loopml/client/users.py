"""Users and project members through the API."""

from __future__ import annotations

import builtins

from loopml.client._http import Http, segment
from loopml.core.auth import Membership, User


class Users:
    """``client.users``: list, create, disable and enable users (platform admins); list a
    project's members, set their roles and remove them (project admins)."""

    def __init__(self, http: Http) -> None:
        self._http = http

    def list(self) -> builtins.list[User]:
        """Every user, by name."""
        data = self._http.json("GET", "/api/v1/users")
        return [User.model_validate(item) for item in data["items"]]

    def create(self, name: str, password: str, *, platform_admin: bool = False) -> User:
        """Add a user; ``ValidationError`` for a password the policy refuses (12 characters
        or more, not a known default, not containing the name)."""
        body = {"name": name, "password": password, "platform_admin": platform_admin}
        return User.model_validate(self._http.json("POST", "/api/v1/users", json=body))

    def disable(self, name: str) -> User:
        """Disable a user: its tokens and sessions are revoked, it can no longer log in
        (``ConflictError`` for yourself or the last platform admin)."""
        path = f"/api/v1/users/{segment(name)}"
        return User.model_validate(self._http.json("PATCH", path, json={"disabled": True}))

    def enable(self, name: str) -> User:
        """Let a disabled user log in again."""
        path = f"/api/v1/users/{segment(name)}"
        return User.model_validate(self._http.json("PATCH", path, json={"disabled": False}))

    def members(self, project: str) -> builtins.list[Membership]:
        """A project's members and their roles, by user name."""
        data = self._http.json("GET", f"/api/v1/projects/{segment(project)}/members")
        return [Membership.model_validate(item) for item in data["items"]]

    def set_role(self, project: str, user: str, role: str) -> Membership:
        """Give ``user`` the ``role`` (``viewer``, ``editor`` or ``admin``) in ``project``."""
        path = f"/api/v1/projects/{segment(project)}/members/{segment(user)}"
        return Membership.model_validate(self._http.json("PUT", path, json={"role": role}))

    def remove_member(self, project: str, user: str) -> None:
        """Take ``user``'s role in ``project`` away (``NotFoundError`` if it had none)."""
        self._http.request("DELETE", f"/api/v1/projects/{segment(project)}/members/{segment(user)}")
