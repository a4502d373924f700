"""Tokens and the caller's identity.

Two kinds of bearer credential, both JWTs (HS256, PyJWT):

- user tokens, signed with ``auth_secret``: ``typ`` is ``access`` (short-lived, accepted by
  every user-facing RPC) or ``refresh`` (accepted only by account_svc's refresh RPC);
- service credentials, signed with ``service_secret`` and ``typ`` ``service``: what one
  feedchat service presents to another. A user token can never pass for one: it is signed
  with the other key and carries the other type.

The interceptor (:mod:`feedchat_runtime.interceptors`) verifies the credential and puts a
:class:`Caller` in a context variable; handlers read it with :func:`current_caller` or
:func:`require_user`. The acting user never comes from a request field.
"""

from __future__ import annotations

import contextvars
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from feedchat_runtime.errors import PermissionDenied, Unauthenticated
from feedchat_runtime.ids import MAX_ID, is_valid_id

ISSUER = "feedchat"
ALGORITHM = "HS256"
DEV_AUTH_SECRET = "feedchat-dev-only-auth-secret-do-not-use-in-production"
DEV_SERVICE_SECRET = "feedchat-dev-only-service-secret-do-not-use-in-production"
_USER_SUBJECT = re.compile(r"[1-9][0-9]{0,18}")
"""A user token's ``sub``: a user id in canonical decimal (no sign, spaces or zeros first)."""


def _user_id(subject: object) -> int:
    """The user id a verified token's ``sub`` names; UNAUTHENTICATED when it names none."""
    if not isinstance(subject, str) or not _USER_SUBJECT.fullmatch(subject):
        raise Unauthenticated("token subject is not a user id", reason="TOKEN_INVALID")
    user_id = int(subject)
    if user_id > MAX_ID:
        raise Unauthenticated("token subject is not a user id", reason="TOKEN_INVALID")
    return user_id


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user (``user_id``) or a feedchat service (``service``)."""

    user_id: int | None = None
    service: str | None = None

    @property
    def is_service(self) -> bool:
        return self.service is not None


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def set_caller(caller: Caller | None) -> contextvars.Token[Caller | None]:
    return _caller.set(caller)


def current_caller() -> Caller | None:
    return _caller.get()


def require_user() -> int:
    """The calling user's id; UNAUTHENTICATED when the caller is not a user."""
    caller = _caller.get()
    if caller is None or caller.user_id is None:
        raise Unauthenticated("this call needs a user's access token", reason="USER_TOKEN_REQUIRED")
    return caller.user_id


def require_service() -> str:
    """The calling service's name; PERMISSION_DENIED for anyone else."""
    caller = _caller.get()
    if caller is None or caller.service is None:
        raise PermissionDenied("only feedchat services may call this", reason="SERVICE_ONLY")
    return caller.service


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: float
    token_id: str


VERIFIED_CACHE = 10_000
"""Bearer tokens a process remembers as verified (about 0.5 KiB each)."""


class TokenAuthority:
    """Signs and verifies user tokens and service credentials."""

    def __init__(
        self,
        auth_secret: str,
        service_secret: str,
        access_ttl: float = 900.0,
        refresh_ttl: float = 30 * 86400.0,
        leeway: float = 0.0,
        verified_cache: int = VERIFIED_CACHE,
    ) -> None:
        if not auth_secret or not service_secret:
            raise ValueError("both secrets are required")
        if auth_secret == service_secret:
            raise ValueError("auth_secret and service_secret must differ")
        self._auth_secret = auth_secret
        self._service_secret = service_secret
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._leeway = leeway
        self._verified_max = verified_cache
        # bearer token -> (caller, expiry): a token seen valid is not decoded again
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()

    def _sign(self, secret: str, sub: str, typ: str, ttl: float) -> IssuedToken:
        now = time.time()
        token_id = uuid.uuid4().hex
        claims = {
            "iss": ISSUER,
            "sub": sub,
            "typ": typ,
            "iat": int(now),
            "exp": int(now + ttl),
            "jti": token_id,
        }
        return IssuedToken(jwt.encode(claims, secret, algorithm=ALGORITHM), now + ttl, token_id)

    def _sign_user(self, user_id: int, typ: str, ttl: float) -> IssuedToken:
        if not is_valid_id(user_id):
            raise ValueError(f"{user_id} is not a user id")
        return self._sign(self._auth_secret, str(user_id), typ, ttl)

    def issue_access(self, user_id: int) -> IssuedToken:
        return self._sign_user(user_id, "access", self.access_ttl)

    def issue_refresh(self, user_id: int) -> IssuedToken:
        return self._sign_user(user_id, "refresh", self.refresh_ttl)

    def issue_service(self, service: str, ttl: float = 3600.0) -> IssuedToken:
        return self._sign(self._service_secret, service, "service", ttl)

    def _decode(self, token: str, secret: str) -> dict[str, object]:
        try:
            claims: dict[str, object] = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "typ", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token has expired", reason="TOKEN_EXPIRED") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("token is not valid", reason="TOKEN_INVALID") from exc
        return claims

    def verify_user(self, token: str, typ: str = "access") -> tuple[int, dict[str, object]]:
        """The user id in a valid user token of type ``typ``, and its claims."""
        claims = self._decode(token, self._auth_secret)
        if claims.get("typ") != typ:
            raise Unauthenticated(f"expected an {typ} token", reason="TOKEN_WRONG_TYPE")
        return _user_id(claims.get("sub")), claims

    def verify_bearer(self, token: str) -> Caller:
        """A Caller from either kind of credential.

        The unverified ``typ`` claim only picks which key to verify with (one signature
        check per call); the verified claims must then carry that same type, so a user
        token can never pass for a service credential or the other way round. A token
        verified before is answered from a bounded cache (least recently used out) until
        it expires: the same token always verifies the same way, and the check costs about
        as much as a small RPC otherwise.
        """
        hit = self._verified.get(token)
        if hit is not None:
            caller, expires = hit
            if time.time() < expires + self._leeway:  # as PyJWT checks exp
                self._verified.move_to_end(token)
                return caller
            del self._verified[token]
        caller, claims = self._verify_bearer(token)
        exp = claims.get("exp")
        if self._verified_max > 0 and isinstance(exp, int | float):
            self._verified[token] = (caller, float(exp))
            if len(self._verified) > self._verified_max:
                self._verified.popitem(last=False)
        return caller

    def _verify_bearer(self, token: str) -> tuple[Caller, dict[str, object]]:
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("token is not valid", reason="TOKEN_INVALID") from exc
        if unverified.get("typ") == "service":
            claims = self._decode(token, self._service_secret)
            if claims.get("typ") != "service":
                raise Unauthenticated("token is not valid", reason="TOKEN_INVALID")
            return Caller(service=str(claims["sub"])), claims
        user_id, claims = self.verify_user(token, "access")
        return Caller(user_id=user_id), claims


def authority_from_config(auth_secret: str, service_secret: str, dev: bool) -> TokenAuthority:
    """The process's authority; dev mode falls back to the built-in throwaway secrets."""
    if dev:
        auth_secret = auth_secret or DEV_AUTH_SECRET
        service_secret = service_secret or DEV_SERVICE_SECRET
    return TokenAuthority(auth_secret, service_secret)
