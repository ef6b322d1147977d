"""API tokens (SPEC T1, T2): short-lived EdDSA (Ed25519) JWTs issued from keys, and the keys that sign them.

:class:`TokenService` is the one place tokens are made and checked: ``POST /v1/tokens``, ``POST /v1/tokens/verify``,
``GET /.well-known/jwks.json`` and ``keystile tokens`` call it, and so may OAuth 2.0 client credentials (which
issue the same token with a few more claims and another ``typ``).

- **Issuing is a verification.** :meth:`TokenService.issue` verifies the key through
  :meth:`VerificationService.verify <keystile.service.verification.VerificationService.verify>` (codes, IP
  allowlists, rate limits and credits apply; the event is tagged ``token``) and signs a token only for ``VALID``.
  Asking for permissions is a permission query (``a AND b``) of that verification, so a key that lacks one is
  refused as ``INSUFFICIENT_PERMISSIONS`` before it spends anything.
- **Signing keys** are Ed25519 keys stored in ``signing_keys``: the private key sealed (AES-256-GCM) under a data
  key of the recoverable keys' vault, its associated data naming the ``kid``. The first one is made on first use;
  :meth:`TokenService.rotate` adds a new one that signs from then on and keeps the previous public keys published
  until the last token they signed has expired (:data:`MAX_TTL_S` after the rotation). Without the master key,
  issuing answers 503 ``master_key_unavailable``; checking tokens and the JWKS need only public keys.
- **Checking a token** (:meth:`TokenService.verify`) answers a verification code, as a key's verification does:
  ``VALID``; ``EXPIRED`` for a token past its ``exp`` (or whose key has expired); ``REVOKED`` when the key that
  issued it was revoked or deleted; ``DISABLED`` when it is disabled; ``NOT_FOUND`` for anything that is not a
  token of this deployment (malformed, a bad signature, an unknown or dropped ``kid``, another issuer, a time
  in the future, or a key of an API the caller may not verify). It spends no limits or credits.

- **Checking a token in process** (:meth:`TokenService.check`: forward auth and ``keystile proxy``) is offline
  against this deployment's own public keys, with what a verified token grants cached until its ``exp`` (at most
  :data:`CHECK_CACHE_SIZE` tokens). The state of the key that issued it (revoked, deleted, disabled, expired) is
  read from storage at most once per :data:`KEY_STATE_TTL_S` per key and dropped at once when the change bus says
  that key changed, so a revoked key's tokens stop working here as fast as the key itself does.

PyJWT is imported here only, so the key verification path never loads it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keystile.core.ids import new_id
from keystile.core.models import SigningKey
from keystile.core.permissions import MAX_SLUG_LENGTH, is_permission_name
from keystile.core.ports import Change
from keystile.core.tokens import TokenGrant
from keystile.core.verify import Code, KeyCheck, VerifyResult
from keystile.errors import Conflict, InvalidInput, MasterKeyUnavailable
from keystile.service import sealing
from keystile.service.authz import Actor, Principal
from keystile.service.context import Context
from keystile.service.vault import Vault
from keystile.service.verification import OPERATOR, VerificationService

MIN_TTL_S = 1
MAX_TTL_S = 3600
DEFAULT_TTL_S = 900
EVENT_TAG = "token"
ALGORITHM = "EdDSA"
MAX_PERMISSIONS = 100
CLOCK_SKEW_S = 5
"""How far in the future a token's ``iat``/``nbf`` may be (clocks of several servers differ a little)."""
RELOAD_S = 1.0
"""How long this process trusts its list of signing keys before reading it again (a rotation by another process)."""
CHECK_CACHE_SIZE = 10_000
"""How many tokens :meth:`TokenService.check` remembers (least recently used first out)."""
KEY_STATE_TTL_S = 5.0
"""How long :meth:`TokenService.check` trusts what it read of the state of a token's key (as the key cache does)."""
_SYSTEM = Actor(Principal("keystile", None))


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The JWK (RFC 8037) of a signing key's public key."""
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64url(key.public_key),
        "kid": key.kid,
        "alg": ALGORITHM,
        "use": "sig",
    }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed token and what the answer says about it (times in seconds since the epoch)."""

    token: str
    kid: str
    jti: str
    scope: tuple[str, ...]
    issued_at: int
    expires_at: int

    @property
    def expires_in(self) -> int:
        return self.expires_at - self.issued_at


@dataclass(frozen=True, slots=True)
class TokenIssue:
    """What issuing did: the key's verification and, when it was ``VALID``, the token."""

    result: VerifyResult
    token: IssuedToken | None


@dataclass(frozen=True, slots=True)
class TokenCheck:
    """What checking a token found: a verification code and, for a token of this deployment, its claims."""

    code: str
    claims: Mapping[str, Any] | None = None
    kid: str | None = None

    @property
    def valid(self) -> bool:
        return self.code == Code.VALID


@dataclass(frozen=True, slots=True)
class SigningKeyState:
    """A signing key as ``keystile tokens keys`` shows it: ``current`` (signs new tokens), ``retired`` (its public
    key is still published for tokens it signed) or ``dropped`` (no token it signed is unexpired)."""

    key: SigningKey
    state: str


@dataclass(frozen=True, slots=True)
class TokenRotation:
    kid: str
    retired: tuple[str, ...]
    published_until: int
    """When the retired keys leave the JWKS (ms since the epoch)."""


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _not_found() -> TokenCheck:
    return TokenCheck(Code.NOT_FOUND)


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """What :meth:`TokenService.check` found: a verification code and, for a token of this deployment, its grant."""

    code: str
    grant: TokenGrant | None = None

    @property
    def valid(self) -> bool:
        return self.code == Code.VALID


_NOT_FOUND_AUTH = TokenAuth(Code.NOT_FOUND)


class TokenService:
    """Issues and checks API tokens; keeps the signing keys (see the module's description)."""

    def __init__(self, ctx: Context, vault: Vault, verification: VerificationService, issuer: str) -> None:
        self._ctx = ctx
        self._vault = vault
        self._verification = verification
        self.issuer = issuer
        self._keys: list[SigningKey] = []
        self._loaded_at: float | None = None
        self._private: dict[str, Ed25519PrivateKey] = {}
        self._public: dict[str, Ed25519PublicKey] = {}
        self._lock = asyncio.Lock()
        self._checked: OrderedDict[bytes, TokenGrant] = OrderedDict()
        self._key_states: dict[str, tuple[str, float]] = {}
        self._key_ids: dict[bytes, str] = {}
        """The digest of each key in ``_key_states``: changes name keys by digest."""
        ctx.bus.subscribe(self._apply_changes)

    # -- signing keys ---------------------------------------------------------------------------------------

    async def _load(self, *, fresh: bool = False) -> list[SigningKey]:
        loaded = self._loaded_at
        if fresh or loaded is None or self._ctx.clock.monotonic() - loaded > RELOAD_S:
            self._keys = await self._ctx.storage.list_signing_keys()
            self._loaded_at = self._ctx.clock.monotonic()
        return self._keys

    @staticmethod
    def _current(keys: Sequence[SigningKey]) -> SigningKey | None:
        signing = [k for k in keys if k.retired_at is None]
        return signing[-1] if signing else None

    async def _make_key(self, actor: Actor, *, rotate: bool) -> TokenRotation:
        """A new signing key, stored sealed, that signs from now on (after a rotation: the others retire)."""
        try:
            sealer = await self._vault.sealer()
        except MasterKeyUnavailable as exc:
            raise MasterKeyUnavailable(f"tokens cannot be signed: {exc.detail}") from None
        now = self._ctx.now()
        kid = new_id("sk", now)
        private = Ed25519PrivateKey.generate()
        nonce, ciphertext = sealing.seal_signing_key(sealer.data_key, kid, private.private_bytes_raw())
        public = private.public_key().public_bytes_raw()
        key = SigningKey(kid, now, public, sealer.data_key_id, nonce, ciphertext)
        until = now + MAX_TTL_S * 1000
        async with self._ctx.storage.transaction() as tx:
            await tx.insert_signing_key(key)
            retired = await tx.retire_signing_keys(at=now, not_after=until, keep=kid) if rotate else []
            action = "signing_key.rotate" if rotate else "signing_key.create"
            await self._ctx.audit(tx, actor, action, kid, {"retired": retired, "published_until": until}, now)
        self._private[kid] = private
        await self._load(fresh=True)
        return TokenRotation(kid, tuple(retired), until)

    async def _signer(self) -> tuple[str, Ed25519PrivateKey]:
        current = self._current(await self._load())
        if current is None:
            async with self._lock:
                current = self._current(await self._load(fresh=True))
                if current is None:
                    await self._make_key(_SYSTEM, rotate=False)
                    current = self._current(self._keys)
        assert current is not None
        private = self._private.get(current.kid)
        if private is None:
            try:
                data_key = await self._vault.data_key(current.data_key_id)
            except MasterKeyUnavailable as exc:
                raise MasterKeyUnavailable(f"tokens cannot be signed: {exc.detail}") from None
            try:
                raw = sealing.open_signing_key(data_key, current.kid, current.nonce, current.ciphertext)
            except sealing.Unopenable:
                detail = f"the stored signing key {current.kid} does not open: it was changed, or belongs to another"
                raise Conflict(detail, code="signing_key_unreadable") from None
            private = self._private[current.kid] = Ed25519PrivateKey.from_private_bytes(raw)
        return current.kid, private

    async def rotate(self, actor: Actor) -> TokenRotation:
        """Add a new signing key that signs from now on; the others retire, their public keys published until
        every token they signed has expired. Audited ``signing_key.rotate``. Raises MasterKeyUnavailable."""
        async with self._lock:
            return await self._make_key(actor, rotate=True)

    async def signing_keys(self) -> list[SigningKeyState]:
        """Every stored signing key with its state, newest first."""
        keys = await self._load(fresh=True)
        now = self._ctx.now()
        current = self._current(keys)
        states = []
        for key in reversed(keys):
            if current is not None and key.kid == current.kid:
                state = "current"
            elif key.published(now):
                state = "retired"
            else:
                state = "dropped"
            states.append(SigningKeyState(key, state))
        return states

    async def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JSON Web Key Set of the public keys that tokens may be checked with, newest first."""
        now = self._ctx.now()
        return {"keys": [public_jwk(k) for k in reversed(await self._load()) if k.published(now)]}

    # -- issuing --------------------------------------------------------------------------------------------

    async def issue(
        self,
        check: KeyCheck,
        *,
        ttl_s: int = DEFAULT_TTL_S,
        permissions: Sequence[str] | None = None,
        principal: Principal = OPERATOR,
        request_id: str | None = None,
        claims: Mapping[str, Any] | None = None,
        typ: str = "JWT",
    ) -> TokenIssue:
        """Verify ``check``'s key (as ``principal``; the event is tagged ``token``) and, when it is ``VALID``,
        sign a token for it that expires after ``ttl_s`` seconds (or when the key does, if sooner).

        ``permissions`` narrows the token's ``scope`` (default: every permission the key holds, its roles' included)
        and must be held by the key (else the verification answers ``INSUFFICIENT_PERMISSIONS``). ``claims`` and
        ``typ`` are for profiles of the token (OAuth 2.0 access tokens). Raises InvalidInput (``invalid_ttl``,
        ``invalid_scope``) and MasterKeyUnavailable (503) before anything is spent.
        """
        if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
            raise InvalidInput(
                f"ttl_s must be from {MIN_TTL_S} to {MAX_TTL_S} seconds", code="invalid_ttl", field="/ttl_s"
            )
        wanted: tuple[str, ...] | None = None
        if permissions is not None:
            wanted = tuple(dict.fromkeys(permissions))
            if len(wanted) > MAX_PERMISSIONS or not all(map(is_permission_name, wanted)):
                raise InvalidInput(
                    f"permissions must be at most {MAX_PERMISSIONS} permission names (letters, digits, _ : . -; at most"
                    f" {MAX_SLUG_LENGTH} characters; not AND or OR)",
                    code="invalid_scope",
                    field="/permissions",
                )
        kid, private = await self._signer()
        tags = tuple(check.tags) if EVENT_TAG in check.tags else (*check.tags, EVENT_TAG)
        result = await self._verification.verify(
            principal,
            KeyCheck(
                check.key,
                api_id=check.api_id,
                permissions=" AND ".join(wanted) if wanted else None,
                ip=check.ip,
                cost=check.cost,
                ratelimits=check.ratelimits,
                tags=tags,
            ),
            request_id,
        )
        entry = result.entry
        if not result.valid or entry is None:
            return TokenIssue(result, None)
        key = entry.key
        now_ms = self._ctx.now()
        now = now_ms // 1000
        expires = now + ttl_s
        if entry.expires_at is not None:
            expires = max(now + 1, min(expires, entry.expires_at // 1000))
        scope = wanted if wanted is not None else tuple(sorted(entry.grants.exact))
        jti = new_id("tok", now_ms)
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "sub": key.owner_id or key.id,
            "key_id": key.id,
            "api_id": key.api_id,
            "scope": " ".join(scope),
            "iat": now,
            "exp": expires,
            "jti": jti,
        }
        if claims:
            payload.update(claims)
        token = jwt.encode(payload, private, algorithm=ALGORITHM, headers={"kid": kid, "typ": typ})
        return TokenIssue(result, IssuedToken(token, kid, jti, scope, now, expires))

    # -- checking -------------------------------------------------------------------------------------------

    async def _public_key(self, kid: str) -> Ed25519PublicKey | None:
        now = self._ctx.now()
        found = next((k for k in await self._load() if k.kid == kid), None)
        if found is None:
            found = next((k for k in await self._load(fresh=True) if k.kid == kid), None)
        if found is None or not found.published(now):
            return None
        public = self._public.get(kid)
        if public is None:
            public = self._public[kid] = Ed25519PublicKey.from_public_bytes(found.public_key)
        return public

    async def verify(self, principal: Principal, token: str) -> TokenCheck:
        """Check a token online: its signature, times and issuer, and that the key that issued it is still valid
        (see the module's description for the codes). ``principal`` needs ``keys.verify``: tokens of keys of
        other APIs are ``NOT_FOUND``. Spends nothing and records no event."""
        principal.require_any("keys.verify")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _not_found()
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            return _not_found()
        public = await self._public_key(kid)
        if public is None:
            return _not_found()
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=[ALGORITHM],
                # Times are checked below against this deployment's clock; the audience is the caller's business.
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError:
            return _not_found()
        if claims.get("iss") != self.issuer:
            return _not_found()
        key_id, api_id = claims.get("key_id"), claims.get("api_id")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
        if not (isinstance(key_id, str) and isinstance(api_id, str)):
            return _not_found()
        if not (isinstance(exp, int) and isinstance(iat, int) and isinstance(nbf, int)):
            return _not_found()
        if not (_whole(exp) and _whole(iat) and _whole(nbf)):
            return _not_found()
        scope = principal.scope("keys.verify")
        if scope is not None and api_id not in scope:
            return _not_found()
        now_ms = self._ctx.now()
        now = now_ms / 1000
        if iat > now + CLOCK_SKEW_S or nbf > now + CLOCK_SKEW_S:
            return _not_found()
        if exp <= now:
            return TokenCheck(Code.EXPIRED, claims, kid)
        key = await self._ctx.storage.get_key(key_id)
        if key is None or key.api_id != api_id or key.revoked_at is not None:
            # A deleted key is as gone as a revoked one: its tokens must not outlive it.
            return TokenCheck(Code.REVOKED, claims, kid)
        if not key.enabled:
            return TokenCheck(Code.DISABLED, claims, kid)
        api = await self._ctx.storage.get_api(api_id)
        stale = api.stale_expiry(key.created_at) if api is not None else None
        if key.is_expired(now_ms) or (stale is not None and now_ms >= stale):
            return TokenCheck(Code.EXPIRED, claims, kid)
        return TokenCheck(Code.VALID, claims, kid)

    # -- checking in process (forward auth, the proxy) ----------------------------------------------------------

    async def check(self, token: str, *, api_id: str | None = None, permissions: str | None = None) -> TokenAuth:
        """Check a token offline against this deployment's public keys (cached until its ``exp``), then the state
        of the key that issued it (cached briefly, dropped on change). ``api_id`` accepts only tokens of that API
        (others are ``NOT_FOUND``, as keys are); ``permissions`` is a permission query the token's scope must
        satisfy (``INSUFFICIENT_PERMISSIONS``). Spends nothing and records no event."""
        digest = hashlib.sha256(token.encode()).digest()
        grant = self._checked.get(digest)
        now = self._ctx.clock.now()
        if grant is None:
            grant = await self._decode(token, now)
            if grant is None:
                return _NOT_FOUND_AUTH
            self._checked[digest] = grant
            if len(self._checked) > CHECK_CACHE_SIZE:
                self._drop_expired(now)
        if grant.expires_at <= now:
            self._checked.pop(digest, None)
            return TokenAuth(Code.EXPIRED, grant)
        if api_id is not None and grant.api_id != api_id:
            return _NOT_FOUND_AUTH
        code = await self._key_state(grant.key_id, grant.api_id)
        if code != Code.VALID:
            return TokenAuth(code, grant)
        if permissions is not None and not grant.permitted(permissions):
            return TokenAuth(Code.INSUFFICIENT_PERMISSIONS, grant)
        return TokenAuth(Code.VALID, grant)

    async def _decode(self, token: str, now: float) -> TokenGrant | None:
        """The grant of a token signed by one of this deployment's published keys, not issued in the future;
        ``None`` for anything else. An unknown ``kid`` does not reload the keys (they are reloaded at most every
        :data:`RELOAD_S`), so a flood of made-up ones never reaches storage."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str):
            return None
        now_ms = self._ctx.now()
        found = next((k for k in await self._load() if k.kid == kid), None)
        if found is None or not found.published(now_ms):
            return None
        public = self._public.get(kid)
        if public is None:
            public = self._public[kid] = Ed25519PublicKey.from_public_bytes(found.public_key)
        try:
            claims = jwt.decode(
                token,
                public,
                algorithms=[ALGORITHM],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError:
            return None
        # No issuer check: a signature by one of this deployment's own keys says who issued it, and a process
        # that opens the storage (an integration's local verifier) need not know the server's public URL.
        nbf = claims.get("nbf", 0)
        grant = TokenGrant.from_claims(claims, kid)
        if grant is None or not _whole(nbf) or grant.issued_at > now + CLOCK_SKEW_S or nbf > now + CLOCK_SKEW_S:
            return None
        return grant

    async def _key_state(self, key_id: str, api_id: str) -> str:
        """``VALID``, ``REVOKED`` (revoked or deleted), ``DISABLED`` or ``EXPIRED``: the state of a token's key."""
        monotonic = self._ctx.clock.monotonic()
        known = self._key_states.get(key_id)
        if known is not None and known[1] > monotonic:
            return known[0]
        now_ms = self._ctx.now()
        key = await self._ctx.storage.get_key(key_id)
        if key is None or key.api_id != api_id or key.revoked_at is not None:
            code = Code.REVOKED
        elif not key.enabled:
            code = Code.DISABLED
        else:
            api = await self._ctx.storage.get_api(api_id)
            stale = api.stale_expiry(key.created_at) if api is not None else None
            expired = key.is_expired(now_ms) or (stale is not None and now_ms >= stale)
            code = Code.EXPIRED if expired else Code.VALID
        if len(self._key_states) >= CHECK_CACHE_SIZE:
            self._key_states.clear()
            self._key_ids.clear()
        self._key_states[key_id] = (code, monotonic + KEY_STATE_TTL_S)
        if key is not None:
            self._key_ids[key.digest] = key_id
        return code

    def _drop_expired(self, now: float) -> None:
        for digest in [d for d, grant in self._checked.items() if grant.expires_at <= now]:
            del self._checked[digest]
        while len(self._checked) > CHECK_CACHE_SIZE:
            self._checked.popitem(last=False)

    def _apply_changes(self, changes: Sequence[Change]) -> None:
        """A change-bus listener: forget the state of keys that changed (by digest), or of every key."""
        if not self._key_states:
            return
        for change in changes:
            if change.kind == "key":
                key_id = self._key_ids.pop(bytes.fromhex(change.ref), None)
                if key_id is not None:
                    self._key_states.pop(key_id, None)
            elif change.kind != "credits":
                self._key_states.clear()
                self._key_ids.clear()
                return
