"""A local Microsoft Graph + identity platform stand-in: a real HTTPS server on 127.0.0.1 with seeded mailboxes.

Identity platform (``/{tenant}/...``): the OpenID discovery document and the v2.0 token endpoint for the client
credentials grant with a client secret or a certificate client assertion (RS256 + ``x5t`` or PS256 +
``x5t#S256``, signature checked against the registered certificate). Failures answer AADSTS error bodies as
Entra ID does (``AADSTS7000215`` wrong secret, ``AADSTS90002`` unknown tenant, ``AADSTS700027`` bad assertion).

Graph (``/v1.0/...``): the subset ``bot.mail.graph.GraphMailbox`` uses: mailFolders (well-known names, child
folders, create), messages delta per folder with ``@odata.nextLink``/``@odata.deltaLink`` and
``Prefer: odata.maxpagesize``, get, PATCH (categories, body, recipients), move, createReply, send and JSON
``$batch``, and DELETE of a message (204; it is gone, a second DELETE answers 404 ErrorItemNotFound). Like
Graph, the stand-in deletes whatever it is asked to: Clawback may delete only its own reply drafts, so tests
look at the recorded DELETE requests.

Switches for tests: ``throttle(n, retry_after)`` (next n Graph calls answer 429), ``expire_tokens()`` (every
issued token answers 401 from now on), ``evict_sync_states()`` (every delta/skip token answers 410),
``scope`` (the mailboxes the app may reach; others answer 403 as Exchange Online RBAC for Applications does).
At most 4 concurrent requests per mailbox are served; the fifth answers 429 (``MailboxConcurrency``).

A throwaway CA is generated at start; ``ca_path`` is its PEM file, for ``httpx(verify=...)`` and
``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import ipaddress
import itertools
import json
import re
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bot.standins.base import QuietHandler, RecordedRequest, StandInServer

UTC = dt.UTC
WELL_KNOWN = {
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
}
MAX_CONCURRENT_PER_MAILBOX = 4
IN_REPLY_TO_PROP = "String 0x1042"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- TLS -----------------------------------------------------------------------------------------------------


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost; returns (ca, cert, key) PEM paths."""
    now = dt.datetime.now(UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Clawback stand-in CA (throwaway)")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


def make_client_certificate(common_name: str = "clawback-app") -> tuple[str, str, str]:
    """A self-signed app certificate as an admin uploads to Entra: (PEM key + certificate, certificate PEM,
    SHA-1 thumbprint in hex)."""
    now = dt.datetime.now(UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem + cert_pem, cert_pem, cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303


# -- the mailbox model ---------------------------------------------------------------------------------------


@dataclass
class Folder:
    """A mail folder."""

    folder_id: str
    name: str
    parent_id: str | None
    well_known: str | None = None


@dataclass
class Message:
    """A message in a stand-in mailbox. ``rest_id`` changes on every move (what Graph hands out without
    ``Prefer: IdType="ImmutableId"``); ``immutable_id`` never does."""

    immutable_id: str
    rest_id: str
    folder_id: str
    subject: str
    sender_email: str
    sender_name: str
    to: list[str]
    cc: list[str]
    body: str
    body_type: str  # "text" or "html"
    received: dt.datetime
    internet_message_id: str
    reply_to: list[str] = field(default_factory=list)
    in_reply_to: str | None = None
    conversation_id: str = ""
    categories: list[str] = field(default_factory=list)
    is_read: bool = False
    is_draft: bool = False
    seq: int = 0
    change_n: int = 0


@dataclass
class MailboxState:
    """One user's mailbox."""

    upn: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[str, Message] = field(default_factory=dict)  # immutable id -> message
    tombstones: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, folder id, message id)
    sent: list[str] = field(default_factory=list)  # immutable ids sent, in order
    in_flight: int = 0


@dataclass
class AppRegistration:
    """An Entra app registration: its secret and/or certificate."""

    client_id: str
    secret: str | None = None
    certificate_pem: str | None = None


class GraphError(Exception):
    """An error answered as Graph's ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# -- the stand-in --------------------------------------------------------------------------------------------


class GraphStandIn(StandInServer):
    """Microsoft Graph (mail subset) and the identity platform for one tenant, over HTTPS."""

    def __init__(
        self,
        *,
        tenant_id: str = "contoso.onmicrosoft.com",
        tenant_guid: str = "8f3c7f5e-2b1a-4c6e-9d0a-1b2c3d4e5f60",
        client_id: str = "4b1e9f6a-0000-4000-8000-00000000c1aw",
        client_secret: str | None = "graph-s3cret",
        client_certificate_pem: str | None = None,
        mailboxes: tuple[str, ...] = ("emma@contoso.com",),
        token_lifetime: int = 3599,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self.tenants = {tenant_id.lower(), tenant_guid.lower()}
        self.tenant_guid = tenant_guid
        self.app = AppRegistration(client_id, client_secret, client_certificate_pem)
        self.token_lifetime = token_lifetime
        self.mailboxes: dict[str, MailboxState] = {}
        for upn in mailboxes:
            self.add_mailbox(upn)
        self.scope: set[str] | None = None  # None: every mailbox (no RBAC scope); else these UPNs only
        self.tokens: dict[str, float] = {}  # access token -> expiry (epoch seconds)
        self.tokens_issued = 0
        self.epoch = 0  # bumped by evict_sync_states()
        self._seq = itertools.count(1)
        self._throttle: list[float] = []  # Retry-After seconds of the next throttled answers
        self.max_in_flight = 0
        self.tls_dir = Path(tempfile.mkdtemp(prefix="clawback-graph-tls-"))
        self.ca_path, self._cert_path, self._key_path = make_tls(self.tls_dir)

    # -- server --------------------------------------------------------------------------------------------

    @property
    def handler_class(self) -> type[GraphHandler]:  # type: ignore[override]
        return GraphHandler

    def start(self) -> GraphStandIn:
        """Serve HTTPS in a background thread."""
        super().start()
        assert self._httpd is not None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self._cert_path, self._key_path)
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        return self

    @property
    def url(self) -> str:
        """Base URL, ``https://127.0.0.1:PORT``."""
        return super().url.replace("http://", "https://", 1)

    @property
    def login_url(self) -> str:
        """What the policy's ``login_url`` is set to."""
        return self.url

    @property
    def graph_url(self) -> str:
        """What the policy's ``graph_url`` is set to."""
        return f"{self.url}/v1.0"

    # -- seeding and playing the owner ---------------------------------------------------------------------

    def add_mailbox(self, upn: str) -> MailboxState:
        """Create an empty mailbox with the well-known folders."""
        box = MailboxState(upn.lower())
        for wk, name in WELL_KNOWN.items():
            fid = f"AQMk{wk}{uuid.uuid4().hex[:12]}"
            box.folders[fid] = Folder(fid, name, None, wk)
        self.mailboxes[box.upn] = box
        return box

    def _box(self, upn: str) -> MailboxState:
        return self.mailboxes[upn.lower()]

    def folder_id(self, upn: str, name: str) -> str:
        """A folder id by well-known name or display name; created under the Inbox when missing."""
        with self.lock:
            box = self._box(upn)
            found = self._find_folder(box, name)
            if found is not None:
                return found.folder_id
            inbox = self._find_folder(box, "inbox")
            assert inbox is not None
            return self._create_folder(box, inbox.folder_id, name).folder_id

    @staticmethod
    def _find_folder(box: MailboxState, name: str) -> Folder | None:
        key = {"sent": "sentitems", "deleted": "deleteditems"}.get(name.lower(), name.lower())
        for f in box.folders.values():
            if f.folder_id == name or f.well_known == key or f.name.lower() == name.lower():
                return f
        return None

    def _create_folder(self, box: MailboxState, parent_id: str, name: str) -> Folder:
        fid = f"AQMkf{uuid.uuid4().hex[:16]}"
        box.folders[fid] = Folder(fid, name, parent_id)
        return box.folders[fid]

    def _touch(self, msg: Message) -> None:
        msg.seq = next(self._seq)
        msg.change_n += 1

    def add_message(
        self,
        *,
        mailbox: str | None = None,
        subject: str = "Hello",
        sender: str = "carol@example.com",
        sender_name: str = "",
        to: list[str] | None = None,
        cc: list[str] | None = None,
        body_text: str | None = None,
        body_html: str | None = None,
        received: dt.datetime | None = None,
        internet_message_id: str | None = None,
        reply_to: list[str] | None = None,
        in_reply_to: str | None = None,
        folder: str = "inbox",
        categories: list[str] | None = None,
    ) -> str:
        """Deliver a message; returns its immutable id."""
        upn = (mailbox or next(iter(self.mailboxes))).lower()
        with self.lock:
            box = self._box(upn)
            mid = f"AAkALg{uuid.uuid4().hex}"
            msg = Message(
                immutable_id=mid,
                rest_id=f"AAMkA{uuid.uuid4().hex}",
                folder_id=self.folder_id(upn, folder),
                subject=subject,
                sender_email=sender,
                sender_name=sender_name,
                to=list(to or [upn]),
                cc=list(cc or []),
                body=body_html if body_html is not None else (body_text or ""),
                body_type="html" if body_html is not None else "text",
                received=received or dt.datetime.now(UTC),
                internet_message_id=internet_message_id or f"<{uuid.uuid4().hex}@example.com>",
                reply_to=list(reply_to or []),
                in_reply_to=in_reply_to,
                conversation_id=f"AAQk{uuid.uuid4().hex[:20]}",
                categories=list(categories or []),
            )
            self._touch(msg)
            box.messages[mid] = msg
            return mid

    def message(self, item_id: str, mailbox: str | None = None) -> Message | None:
        """A message by immutable or REST id."""
        with self.lock:
            boxes = [self._box(mailbox)] if mailbox else list(self.mailboxes.values())
            for box in boxes:
                found = self._lookup(box, item_id)
                if found is not None:
                    return found
        return None

    @staticmethod
    def _lookup(box: MailboxState, item_id: str) -> Message | None:
        msg = box.messages.get(item_id)
        if msg is not None:
            return msg
        return next((m for m in box.messages.values() if m.rest_id == item_id), None)

    def folder_of(self, item_id: str) -> str | None:
        """The display name of the folder holding a message."""
        with self.lock:
            for box in self.mailboxes.values():
                msg = self._lookup(box, item_id)
                if msg is not None:
                    return box.folders[msg.folder_id].name
        return None

    def messages_in(self, folder: str, mailbox: str | None = None) -> list[Message]:
        """Messages in a folder (display or well-known name)."""
        upn = (mailbox or next(iter(self.mailboxes))).lower()
        with self.lock:
            box = self._box(upn)
            f = self._find_folder(box, folder)
            return [m for m in box.messages.values() if f is not None and m.folder_id == f.folder_id]

    def move_message(self, item_id: str, folder: str, mailbox: str | None = None) -> None:
        """The owner moves a message in Outlook."""
        upn = (mailbox or next(iter(self.mailboxes))).lower()
        with self.lock:
            box = self._box(upn)
            msg = self._lookup(box, item_id)
            assert msg is not None
            self._move(box, msg, self.folder_id(upn, folder))

    def _move(self, box: MailboxState, msg: Message, folder_id: str) -> None:
        if msg.folder_id != folder_id:
            box.tombstones.append((next(self._seq), msg.folder_id, msg.immutable_id))
            msg.folder_id = folder_id
            msg.rest_id = f"AAMkA{uuid.uuid4().hex}"
        self._touch(msg)

    def set_categories(self, item_id: str, categories: list[str]) -> None:
        """The owner changes categories in Outlook."""
        with self.lock:
            msg = self.message(item_id)
            assert msg is not None
            msg.categories = list(categories)
            self._touch(msg)

    def discard(self, item_id: str, mailbox: str | None = None) -> None:
        """The owner discards a draft (or deletes a message) in Outlook."""
        upn = (mailbox or next(iter(self.mailboxes))).lower()
        with self.lock:
            box = self._box(upn)
            msg = self._lookup(box, item_id)
            assert msg is not None
            self._delete(box, msg)

    def _delete(self, box: MailboxState, msg: Message) -> None:
        """Gone from its folder (delta reports it removed); a later request for its id answers 404."""
        box.tombstones.append((next(self._seq), msg.folder_id, msg.immutable_id))
        del box.messages[msg.immutable_id]

    def send_from_outlook(
        self, item_id: str, body_text: str | None = None, mailbox: str | None = None
    ) -> None:
        """The owner sends a draft from Outlook, optionally after editing it."""
        upn = (mailbox or next(iter(self.mailboxes))).lower()
        with self.lock:
            box = self._box(upn)
            msg = self._lookup(box, item_id)
            assert msg is not None
            if body_text is not None:
                msg.body, msg.body_type = body_text, "text"
            self._send(box, msg)

    def _send(self, box: MailboxState, msg: Message) -> None:
        msg.is_draft = False
        msg.received = dt.datetime.now(UTC)
        self._move(box, msg, self.folder_id(box.upn, "sentitems"))
        box.sent.append(msg.immutable_id)

    def sent(self, mailbox: str | None = None) -> list[Message]:
        """Messages sent from a mailbox, oldest first."""
        upn = (mailbox or next(iter(self.mailboxes))).lower()
        with self.lock:
            box = self._box(upn)
            return [box.messages[i] for i in box.sent if i in box.messages]

    # -- switches ------------------------------------------------------------------------------------------

    def throttle(self, times: int = 1, retry_after: float = 1.0) -> None:
        """The next ``times`` Graph requests answer 429 with ``Retry-After``."""
        with self.lock:
            self._throttle.extend([retry_after] * times)

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired: Graph answers 401 until a new one is used."""
        with self.lock:
            self.tokens = {t: 0.0 for t in self.tokens}

    def evict_sync_states(self) -> None:
        """Every delta and skip token issued so far answers 410 (the server dropped the sync state)."""
        with self.lock:
            self.epoch += 1

    def graph_requests(self, path_contains: str = "") -> list[RecordedRequest]:
        """Graph requests served (token endpoint excluded), optionally filtered by path."""
        with self.lock:
            return [r for r in self.requests if r.path.startswith("/v1.0") and path_contains in r.path]

    # -- identity platform ---------------------------------------------------------------------------------

    def discovery(self, tenant: str) -> tuple[int, dict[str, Any]]:
        """The OpenID configuration document of a tenant."""
        if tenant.lower() not in self.tenants:
            return 400, self._aad_error(
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are "
                "signing into the correct cloud.",
            )
        base = f"{self.url}/{tenant}"
        return 200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "issuer": f"{self.url}/{self.tenant_guid}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code", "id_token", "token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }

    @staticmethod
    def _aad_error(error: str, code: int, text: str) -> dict[str, Any]:
        return {
            "error": error,
            "error_description": f"AADSTS{code}: {text} Trace ID: {uuid.uuid4()} "
            f"Correlation ID: {uuid.uuid4()} Timestamp: {_iso(dt.datetime.now(UTC))}",
            "error_codes": [code],
            "timestamp": _iso(dt.datetime.now(UTC)),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }

    def token(self, tenant: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """The client credentials grant."""
        if tenant.lower() not in self.tenants:
            return 400, self._aad_error("invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return 400, self._aad_error(
                "unsupported_grant_type", 70003, "The app requested an unsupported grant."
            )
        if form.get("client_id") != self.app.client_id:
            return 400, self._aad_error(
                "unauthorized_client",
                700016,
                f"Application with identifier '{form.get('client_id')}' was not found in the directory.",
            )
        scope = form.get("scope", "")
        if "/.default" not in scope:
            return 400, self._aad_error(
                "invalid_scope", 1002012, "The provided value for scope is not valid."
            )
        if "client_assertion" in form:
            ok, why = self._check_assertion(tenant, form)
            if not ok:
                return 401, self._aad_error("invalid_client", 700027, f"Client assertion failed: {why}")
        elif "client_secret" in form:
            if not self.app.secret or not secrets.compare_digest(form["client_secret"], self.app.secret):
                return 401, self._aad_error(
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the "
                    "client secret value, not the client secret ID.",
                )
        else:
            return 401, self._aad_error(
                "invalid_client", 7000218, "The request body must contain client_assertion or client_secret."
            )
        token = _b64url(secrets.token_bytes(24))
        with self.lock:
            self.tokens[token] = time.time() + self.token_lifetime
            self.tokens_issued += 1
        return 200, {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    def _check_assertion(self, tenant: str, form: dict[str, str]) -> tuple[bool, str]:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return False, "unsupported client_assertion_type"
        if not self.app.certificate_pem:
            return False, "no certificate is registered for the application"
        cert = x509.load_pem_x509_certificate(self.app.certificate_pem.encode())
        assertion = form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as e:
            return False, f"malformed JWT ({e})"
        sha1 = _b64url(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - the x5t header is SHA-1 by definition
        sha256 = _b64url(cert.fingerprint(hashes.SHA256()))
        # Thumbprints are compared without base64 padding (msal sends it; Entra ID accepts both).
        if (
            str(header.get("x5t#S256", "")).rstrip("=") != sha256
            and str(header.get("x5t", "")).rstrip("=") != sha1
        ):
            return False, "the key was not found (x5t does not match a registered certificate)"
        if header.get("alg") not in ("RS256", "PS256"):
            return False, f"unsupported alg {header.get('alg')!r}"
        try:
            claims = jwt.decode(
                assertion,
                cert.public_key(),
                algorithms=[header["alg"]],
                audience=f"{self.url}/{tenant}/oauth2/v2.0/token",
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as e:
            return False, str(e)
        if claims.get("iss") != self.app.client_id or claims.get("sub") != self.app.client_id:
            return False, "iss and sub must be the client id"
        return True, ""

    # -- Graph ---------------------------------------------------------------------------------------------

    def authorize(self, auth_header: str) -> None:
        """Check the bearer token; raises GraphError 401 like Graph does."""
        token = auth_header[7:] if auth_header.startswith("Bearer ") else ""
        with self.lock:
            expiry = self.tokens.get(token)
        if expiry is None:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        if expiry < time.time():
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )

    def take_throttle(self) -> float | None:
        """The Retry-After of a throttled answer, if the throttle switch is on."""
        with self.lock:
            return self._throttle.pop(0) if self._throttle else None

    def mailbox_for(self, upn: str) -> MailboxState:
        """The mailbox the app asks for; 404 unknown, 403 outside the app's RBAC scope."""
        box = self.mailboxes.get(unquote(upn).lower())
        if box is None:
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{upn}' is invalid.")
        if self.scope is not None and box.upn not in {s.lower() for s in self.scope}:
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return box


# -- HTTP ------------------------------------------------------------------------------------------------------

_USER = r"/v1\.0/users/(?P<upn>[^/]+)"


class GraphHandler(QuietHandler):
    """Routes identity-platform and Graph requests."""

    server: Any

    @property
    def standin(self) -> GraphStandIn:
        return self.server.standin

    def _serve(self, method: str) -> None:
        body = self.read_body() if method in ("POST", "PATCH", "PUT") else b""
        headers = {k: v for k, v in self.headers.items()}
        self.standin.record(RecordedRequest(method, self.path, headers, body))
        split = urlsplit(self.path)
        path, query = split.path, {k: v[-1] for k, v in parse_qs(split.query).items()}
        m = re.fullmatch(r"/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration", path)
        if m and method == "GET":
            status, payload = self.standin.discovery(m["tenant"])
            return self.send_json(status, payload)
        m = re.fullmatch(r"/(?P<tenant>[^/]+)/oauth2/v2\.0/token", path)
        if m and method == "POST":
            form = {k: v[-1] for k, v in parse_qs(body.decode()).items()}
            status, payload = self.standin.token(m["tenant"], form)
            return self.send_json(status, payload)
        if not path.startswith("/v1.0/"):
            return self.send_json(404, {"error": "not_found"})
        status, payload, extra = self.graph(method, path, query, headers, body)
        if status == 204 or payload is None:
            return self.send_bytes(status, b"", "text/plain", extra)
        return self.send_json(status, payload, extra)

    def graph(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        """One Graph request (also used for each request inside a $batch)."""
        sd = self.standin
        box: MailboxState | None = None
        try:
            sd.authorize(headers.get("Authorization") or headers.get("authorization") or "")
            retry_after = sd.take_throttle()
            if retry_after is not None:
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": f"{retry_after:g}"},
                )
            if path == "/v1.0/$batch" and method == "POST":
                return 200, self.batch(json.loads(body or b"{}"), headers), {}
            m = re.match(_USER, path)
            if not m:
                raise GraphError(400, "BadRequest", f"Unsupported path {path}")
            box = sd.mailbox_for(m["upn"])
            with sd.lock:
                box.in_flight += 1
                sd.max_in_flight = max(sd.max_in_flight, box.in_flight)
                busy = box.in_flight > MAX_CONCURRENT_PER_MAILBOX
            if busy:
                raise GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )
            rest = path[m.end() :]
            payload = json.loads(body) if body else {}
            immutable = (
                'idtype="immutableid"' in (headers.get("Prefer") or headers.get("prefer") or "").lower()
            )
            with sd.lock:
                status, out = Routes(sd, box, immutable, headers).route(method, rest, query, payload)
            return status, out, {}
        except GraphError as e:
            return e.status, {"error": {"code": e.code, "message": e.message}}, e.headers
        finally:
            if box is not None:
                with sd.lock:
                    box.in_flight -= 1

    def batch(self, payload: dict[str, Any], outer: dict[str, str]) -> dict[str, Any]:
        """JSON batching: at most 20 requests, each answered on its own."""
        requests = payload.get("requests") or []
        if len(requests) > 20:
            raise GraphError(400, "BadRequest", "The number of batch requests exceeds the limit of 20.")
        responses = []
        for req in requests:
            url = urlsplit(req["url"] if req["url"].startswith("/") else "/" + req["url"])
            headers = {"Authorization": outer.get("Authorization", ""), **(req.get("headers") or {})}
            body = json.dumps(req["body"]).encode() if req.get("body") is not None else b""
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, out, extra = self.graph(req["method"], "/v1.0" + url.path, query, headers, body)
            responses.append({"id": req["id"], "status": status, "headers": extra, "body": out})
        return {"responses": responses}

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")


class Routes:
    """The Graph mail routes for one mailbox (called with the stand-in's lock held)."""

    def __init__(self, sd: GraphStandIn, box: MailboxState, immutable: bool, headers: dict[str, str]) -> None:
        self.sd, self.box, self.immutable = sd, box, immutable
        prefer = (headers.get("Prefer") or headers.get("prefer") or "").lower()
        m = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        self.page_size = min(int(m.group(1)), 1000) if m else 10

    def route(
        self, method: str, rest: str, query: dict[str, str], payload: dict[str, Any]
    ) -> tuple[int, Any]:
        m = re.fullmatch(r"/mailFolders/(?P<f>[^/]+)/messages/delta", rest)
        if m and method == "GET":
            return 200, self.delta(unquote(m["f"]), query)
        m = re.fullmatch(r"/mailFolders/(?P<f>[^/]+)/childFolders", rest)
        if m and method == "GET":
            return 200, self.child_folders(unquote(m["f"]), query)
        if m and method == "POST":
            parent = self.folder(unquote(m["f"]))
            name = str(payload.get("displayName") or "")
            if any(
                f.parent_id == parent.folder_id and f.name.lower() == name.lower()
                for f in self.box.folders.values()
            ):
                raise GraphError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
            return 201, self.folder_json(self.sd._create_folder(self.box, parent.folder_id, name))
        m = re.fullmatch(r"/mailFolders/(?P<f>[^/]+)", rest)
        if m and method == "GET":
            return 200, self.folder_json(self.folder(unquote(m["f"])))
        m = re.fullmatch(r"/mailFolders/(?P<f>[^/]+)/messages", rest)
        if m and method == "GET":
            return 200, self.list_messages(self.folder(unquote(m["f"])), query)
        if rest == "/messages" and method == "GET":
            return 200, self.list_messages(None, query)
        m = re.fullmatch(r"/messages/(?P<id>[^/]+)(?P<action>/[A-Za-z]+)?", rest)
        if m:
            msg = self.msg(unquote(m["id"]))
            action = m["action"] or ""
            if method == "GET" and not action:
                return 200, self.message_json(msg, query)
            if method == "PATCH" and not action:
                return 200, self.patch(msg, payload)
            if method == "POST" and action == "/move":
                folder = self.folder(str(payload.get("destinationId") or ""))
                self.sd._move(self.box, msg, folder.folder_id)
                return 201, self.message_json(msg, {})
            if method == "POST" and action == "/createReply":
                return 201, self.message_json(self.create_reply(msg, payload), {})
            if method == "DELETE" and not action:  # as Graph: any message (tests watch the requests)
                self.sd._delete(self.box, msg)
                return 204, None
            if method == "POST" and action == "/send":
                if not msg.is_draft:
                    raise GraphError(400, "ErrorInvalidOperation", "Only drafts can be sent.")
                self.sd._send(self.box, msg)
                return 202, None
        raise GraphError(400, "BadRequest", f"Unsupported request {method} {rest}")

    # -- lookups -------------------------------------------------------------------------------------------

    def folder(self, ref: str) -> Folder:
        f = self.box.folders.get(ref) or next(
            (f for f in self.box.folders.values() if f.well_known and f.well_known == ref.lower()), None
        )
        if f is None:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified folder could not be found in the store."
            )
        return f

    def msg(self, item_id: str) -> Message:
        msg = self.sd._lookup(self.box, item_id)
        if msg is None:
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return msg

    def mid(self, msg: Message) -> str:
        return msg.immutable_id if self.immutable else msg.rest_id

    # -- JSON ----------------------------------------------------------------------------------------------

    def folder_json(self, f: Folder) -> dict[str, Any]:
        held = [m for m in self.box.messages.values() if m.folder_id == f.folder_id]
        return {
            "id": f.folder_id,
            "displayName": f.name,
            "parentFolderId": f.parent_id or "",
            "childFolderCount": sum(1 for c in self.box.folders.values() if c.parent_id == f.folder_id),
            "totalItemCount": len(held),
            "unreadItemCount": sum(1 for m in held if not m.is_read),
        }

    def message_json(
        self, msg: Message, query: dict[str, str], select: set[str] | None = None
    ) -> dict[str, Any]:
        def addr(a: str, name: str = "") -> dict[str, Any]:
            return {"emailAddress": {"name": name or a, "address": a}}

        out: dict[str, Any] = {
            "id": self.mid(msg),
            "changeKey": f"CQAAAB{msg.change_n:08d}",
            "createdDateTime": _iso(msg.received),
            "lastModifiedDateTime": _iso(msg.received),
            "receivedDateTime": _iso(msg.received),
            "subject": msg.subject,
            "internetMessageId": msg.internet_message_id,
            "parentFolderId": msg.folder_id,
            "conversationId": msg.conversation_id,
            "categories": list(msg.categories),
            "isRead": msg.is_read,
            "isDraft": msg.is_draft,
            "hasAttachments": False,
            "body": {"contentType": msg.body_type, "content": msg.body},
            "from": addr(msg.sender_email, msg.sender_name),
            "sender": addr(msg.sender_email, msg.sender_name),
            "toRecipients": [addr(a) for a in msg.to],
            "ccRecipients": [addr(a) for a in msg.cc],
            "replyTo": [addr(a) for a in msg.reply_to],
        }
        if IN_REPLY_TO_PROP in query.get("$expand", ""):
            out["singleValueExtendedProperties"] = (
                [{"id": IN_REPLY_TO_PROP, "value": msg.in_reply_to}] if msg.in_reply_to else []
            )
        select = select or {s for s in query.get("$select", "").split(",") if s}
        if select:
            out = {
                k: v for k, v in out.items() if k in select or k in ("id", "singleValueExtendedProperties")
            }
        return out

    # -- delta ---------------------------------------------------------------------------------------------

    def _token(self, folder_id: str, since: int, after: int, high: int, cutoff: str | None) -> str:
        raw = json.dumps([self.sd.epoch, self.box.upn, folder_id, since, after, high, cutoff]).encode()
        return _b64url(raw)

    def _untoken(self, token: str, folder_id: str) -> tuple[int, int, int, str | None]:
        try:
            epoch, upn, fid, since, after, high, cutoff = json.loads(
                base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            )
        except (ValueError, TypeError) as e:
            raise GraphError(400, "BadRequest", "Invalid delta token.") from e
        if epoch != self.sd.epoch:
            raise GraphError(
                410, "SyncStateNotFound", "The sync state generation is not found. Please resync."
            )
        if upn != self.box.upn or fid != folder_id:
            raise GraphError(400, "BadRequest", "The delta token belongs to another folder.")
        return since, after, high, cutoff

    def delta(self, folder_ref: str, query: dict[str, str]) -> dict[str, Any]:
        folder = self.folder(folder_ref)
        fid = folder.folder_id
        base = (
            f"{self.sd.graph_url}/users/{quote(self.box.upn)}/mailFolders/{quote(folder_ref)}/messages/delta"
        )
        select = {s for s in query.get("$select", "").split(",") if s} or None
        if "$deltatoken" in query:
            since, _, _, cutoff = self._untoken(query["$deltatoken"], fid)
            after, high = since, next(self.sd._seq)
        elif "$skiptoken" in query:
            since, after, high, cutoff = self._untoken(query["$skiptoken"], fid)
        else:
            since, after, high = 0, 0, next(self.sd._seq)
            # the one filter messages delta supports; it stays with the delta link, as in Graph
            m = re.fullmatch(r"receivedDateTime (?:ge|gt) (\S+)", query.get("$filter", ""))
            if query.get("$filter") and not m:
                raise GraphError(400, "BadRequest", "Delta supports only a receivedDateTime ge/gt filter.")
            cutoff = m.group(1) if m else None
        floor = dt.datetime.fromisoformat(cutoff.replace("Z", "+00:00")) if cutoff else None
        changed = sorted(
            (
                m
                for m in self.box.messages.values()
                if m.folder_id == fid and after < m.seq <= high and (floor is None or m.received >= floor)
            ),
            key=lambda m: m.seq,
        )
        removed = (
            []
            if since == 0
            else sorted((seq, mid) for seq, f, mid in self.box.tombstones if f == fid and after < seq <= high)
        )
        events: list[tuple[int, dict[str, Any]]] = [
            (m.seq, self.message_json(m, {}, select)) for m in changed
        ]
        for seq, mid in removed:
            current = self.box.messages.get(mid)
            if current is not None and current.folder_id == fid:
                continue  # moved back: reported as changed above
            rid = mid if self.immutable or current is None else current.rest_id
            events.append(
                (
                    seq,
                    {"@odata.type": "#microsoft.graph.message", "id": rid, "@removed": {"reason": "deleted"}},
                )
            )
        events.sort(key=lambda e: e[0])
        page, more = events[: self.page_size], len(events) > self.page_size
        out: dict[str, Any] = {
            "@odata.context": f"{self.sd.graph_url}/$metadata#Collection(message)",
            "value": [e[1] for e in page],
        }
        if more:
            out["@odata.nextLink"] = f"{base}?$skiptoken={self._token(fid, since, page[-1][0], high, cutoff)}"
        else:
            out["@odata.deltaLink"] = f"{base}?$deltatoken={self._token(fid, high, high, high, cutoff)}"
        return out

    # -- other reads ---------------------------------------------------------------------------------------

    def child_folders(self, parent_ref: str, query: dict[str, str]) -> dict[str, Any]:
        parent = self.folder(parent_ref)
        kids = [f for f in self.box.folders.values() if f.parent_id == parent.folder_id]
        m = re.fullmatch(r"displayName eq '(.*)'", query.get("$filter", ""))
        if m:
            want = m.group(1).replace("''", "'").lower()
            kids = [f for f in kids if f.name.lower() == want]
        return {"value": [self.folder_json(f) for f in kids]}

    def list_messages(self, folder: Folder | None, query: dict[str, str]) -> dict[str, Any]:
        msgs = [m for m in self.box.messages.values() if folder is None or m.folder_id == folder.folder_id]
        flt = query.get("$filter", "")
        m = re.search(r"ep/value eq '(.*)'\)", flt)
        if m and IN_REPLY_TO_PROP in flt:
            want = m.group(1).replace("''", "'")
            msgs = [x for x in msgs if x.in_reply_to == want]
        m = re.fullmatch(r"internetMessageId eq '(.*)'", flt)
        if m:
            want = m.group(1).replace("''", "'")
            msgs = [x for x in msgs if x.internet_message_id == want]
        msgs.sort(key=lambda x: x.received, reverse=True)
        top = int(query.get("$top", "10"))
        return {"value": [self.message_json(x, query) for x in msgs[:top]]}

    # -- writes --------------------------------------------------------------------------------------------

    def patch(self, msg: Message, payload: dict[str, Any]) -> dict[str, Any]:
        allowed = {"categories", "body", "toRecipients", "ccRecipients", "bccRecipients", "isRead", "subject"}
        unknown = set(payload) - allowed
        if unknown:
            raise GraphError(400, "ErrorInvalidProperty", f"Unsupported property {sorted(unknown)[0]}.")
        if not msg.is_draft and set(payload) - {"categories", "isRead"}:
            raise GraphError(400, "ErrorInvalidOperation", "Only drafts can have their content changed.")
        if "categories" in payload:
            msg.categories = [str(c) for c in payload["categories"]]
        if "isRead" in payload:
            msg.is_read = bool(payload["isRead"])
        if "subject" in payload:
            msg.subject = str(payload["subject"])
        if "body" in payload:
            msg.body = str(payload["body"].get("content") or "")
            msg.body_type = (
                "html" if str(payload["body"].get("contentType", "")).lower() == "html" else "text"
            )
        for key, attr in (("toRecipients", "to"), ("ccRecipients", "cc")):
            if key in payload:
                setattr(msg, attr, [r["emailAddress"]["address"] for r in payload[key]])
        self.sd._touch(msg)
        return self.message_json(msg, {})

    def create_reply(self, original: Message, payload: dict[str, Any]) -> Message:
        """A draft reply as Outlook makes one: to Reply-To (or From), the original quoted below."""
        comment = str(payload.get("comment") or "")
        quoted = f"{comment}\n\n-----Original Message-----\nFrom: {original.sender_email}\n\n{original.body}"
        subject = (
            original.subject if original.subject.lower().startswith("re:") else f"RE: {original.subject}"
        )
        draft = Message(
            immutable_id=f"AAkALg{uuid.uuid4().hex}",
            rest_id=f"AAMkA{uuid.uuid4().hex}",
            folder_id=self.folder("drafts").folder_id,
            subject=subject,
            sender_email=self.box.upn,
            sender_name="",
            to=list(original.reply_to or [original.sender_email]),
            cc=[],
            body=quoted,
            body_type="text",
            received=dt.datetime.now(UTC),
            internet_message_id=f"<{uuid.uuid4().hex}@{self.box.upn.split('@')[-1]}>",
            in_reply_to=original.internet_message_id,
            conversation_id=original.conversation_id,
            is_draft=True,
        )
        self.sd._touch(draft)
        self.box.messages[draft.immutable_id] = draft
        return draft


def main() -> None:
    """``python -m bot.standins.graph``: serve the stand-in until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sd = GraphStandIn(port=args.port).start()
    print(f"Graph stand-in on {sd.url} (CA: {sd.ca_path}); login_url={sd.login_url} graph_url={sd.graph_url}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sd.stop()


if __name__ == "__main__":
    main()
