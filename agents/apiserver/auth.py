"""Bearer-token authentication from a static token file (kube-apiserver's --token-auth-file format).

Each line is ``token,user,uid[,"group1,group2"]``. Tokens are kept only as SHA-256 digests and
compared by digest. Health and version endpoints answer without a token.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.machinery.errors import KubelabError

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


class TokenFileError(KubelabError):
    """The token file cannot be read or has a bad line."""


@dataclass(frozen=True)
class User:
    name: str
    uid: str
    groups: tuple[str, ...]


ANONYMOUS = User("system:anonymous", "", ("system:unauthenticated",))
AUTHENTICATED = "system:authenticated"


def with_authenticated(groups: Sequence[str]) -> tuple[str, ...]:
    """A user's groups as the API server judges and reports them: kube adds ``system:authenticated``
    to every user an authenticator vouched for."""
    return tuple(groups) if AUTHENTICATED in groups else (*groups, AUTHENTICATED)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenAuthenticator:
    def __init__(self, users: dict[bytes, User]) -> None:
        self._users = users
        self._recent: dict[str, User] = {}  # tokens already verified: skips hashing on every request

    @classmethod
    def from_file(cls, path: Path) -> TokenAuthenticator:
        try:
            text = path.read_text()
        except OSError as exc:
            raise TokenFileError(f"cannot read token file {path}: {exc.strerror}") from exc
        users: dict[bytes, User] = {}
        for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 3 or not row[0] or not row[1]:
                raise TokenFileError(f"{path}:{number}: expected token,user,uid[,groups]")
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
            users[_digest(row[0])] = User(row[1], row[2], groups)
        if not users:
            raise TokenFileError(f"{path} holds no tokens")
        return cls(users)

    def authenticate(self, authorization: str | None) -> User | None:
        if not authorization:
            return None
        known = self._recent.get(authorization)
        if known is not None:
            return known
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        user = self._users.get(_digest(token.strip()))
        if user is not None and len(self._recent) < 1024:
            self._recent[authorization] = user
        return user
