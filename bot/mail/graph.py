"""``GraphMailbox``: the ``Mailbox`` protocol over Microsoft Graph. The only mail module that imports msal and httpx.

App-only auth: ``msal.ConfidentialClientApplication`` (client credentials with a secret or a certificate) under
the authority ``login_url/tenant_id``; msal caches the token and refreshes it before expiry, and a 401 from Graph
drops the cached token and retries once. Every request says ``Prefer: IdType="ImmutableId"`` so ids survive
moves. 429/503/504 are retried honouring ``Retry-After`` (bounded; beyond the bound the caller gets
``MailThrottled``), and at most 4 requests per mailbox are in flight, Exchange Online's per-mailbox limit.

Sync is the messages delta query per folder with a minimal ``$select``; the sync state is a small JSON document
holding the ``@odata.nextLink``/``@odata.deltaLink`` and when the previous round began (delta does not say
whether an item is new or changed, so items received since then are reported as both ``create`` and
``update``: the poller dedupes creates on the Internet Message-ID). An idle poll is one request per folder.
Bodies of changed items are fetched with JSON ``$batch`` (20 per request). A 410 from delta is
``MailSyncStateInvalid``. There is no delete and no free-form send.

TLS trust: ``ca_bundle`` when given; otherwise the standard variables (``REQUESTS_CA_BUNDLE`` for msal's
requests, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` for httpx), as a corporate proxy needs.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msal
import requests

from bot.mail.base import (
    DraftDeletion,
    MailAuthError,
    MailError,
    MailMessage,
    MailNotFound,
    MailSyncStateInvalid,
    MailThrottled,
    MailUnavailable,
    SyncChange,
    SyncResult,
)
from bot.mail.text import html_to_text

log = logging.getLogger(__name__)

MICROSOFT_LOGIN_HOSTS = {
    "login.microsoftonline.com",
    "login.microsoft.com",
    "login.windows.net",
    "login.microsoftonline.us",
    "login.partner.microsoftonline.cn",
    "login.chinacloudapi.cn",
}
DEFAULT_LOGIN_URL = "https://login.microsoftonline.com"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
MAX_CONCURRENT = 4  # Exchange Online's per-app, per-mailbox concurrency limit
BATCH_LIMIT = 20  # JSON batching's limit per request
RETRY_STATUSES = {429, 503, 504}
IN_REPLY_TO_PROP = "String 0x1042"  # PidTagInReplyToId as a Graph single-value extended property
EXPAND_IN_REPLY_TO = f"singleValueExtendedProperties($filter=id eq '{IN_REPLY_TO_PROP}')"
MESSAGE_SELECT = (
    "id,changeKey,internetMessageId,subject,from,sender,toRecipients,ccRecipients,receivedDateTime,body,"
    "categories,isRead,isDraft,hasAttachments,parentFolderId,conversationId"
)
DELTA_SELECT = "id,receivedDateTime"
WELL_KNOWN = {"inbox": "inbox", "drafts": "drafts", "sent": "sentitems", "sentitems": "sentitems"}
# Items received this long before the previous sync round began may still be new (clock skew, delivery lag).
NEW_ITEM_MARGIN = timedelta(minutes=10)
_AADSTS_TEXT = re.compile(
    r"AADSTS\d+:[^\"]*?(?= Trace ID:|\"|$)"
)  # "AADSTS7000215: Invalid client secret ..."


def _parse_time(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _addr(recipient: dict[str, Any] | None) -> str:
    return str(((recipient or {}).get("emailAddress") or {}).get("address") or "")


def _quote_odata(value: str) -> str:
    """A string literal for an OData ``$filter`` (single quotes doubled)."""
    return value.replace("'", "''")


class GraphMailbox:
    """A mailbox in Exchange Online reached over Microsoft Graph with an app-only token."""

    def __init__(
        self,
        address: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str | None = None,
        client_certificate: dict[str, str] | None = None,
        login_url: str = DEFAULT_LOGIN_URL,
        graph_url: str = DEFAULT_GRAPH_URL,
        timeout: float = 30.0,
        ca_bundle: str | None = None,
        max_retries: int = 3,
        max_retry_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        first_sync_days: int | None = None,
    ) -> None:
        if not (client_secret or client_certificate):
            raise ValueError("Graph needs a client secret or a client certificate")
        self.address = address
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._credential: str | dict[str, str] = client_certificate or client_secret or ""
        self.login_url = login_url.rstrip("/")
        self.graph_url = graph_url.rstrip("/")
        graph = urlsplit(self.graph_url)
        self.scope = f"{graph.scheme}://{graph.netloc}/.default"
        self.max_retries = max_retries
        # The Inbox's first delta asks only for mail this recent: older mail is never read (nor triaged).
        self.first_sync_days = first_sync_days
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self._timeout = timeout
        self._cache = msal.TokenCache()
        self._app: msal.ConfidentialClientApplication | None = None
        self._app_lock = threading.Lock()
        self._session = requests.Session()
        if ca_bundle:
            # An explicit bundle wins over REQUESTS_CA_BUNDLE (requests lets the environment override verify).
            self._session.trust_env = False
            self._session.verify = ca_bundle
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=MAX_CONCURRENT, max_keepalive_connections=MAX_CONCURRENT),
        )
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self._user = f"{self.graph_url}/users/{quote(address)}"
        self._folder_ids: dict[str, str] = {}  # logical name (lower-case) -> folder id
        self._folder_names: dict[str, str] = {}  # folder id -> logical name

    def close(self) -> None:
        """Close the HTTP clients."""
        self._http.close()
        self._session.close()

    def check(self) -> str:
        """A token from the identity platform and one GET of the Inbox folder (``clawback doctor``)."""
        data = self._request(
            "GET", f"{self._user}/mailFolders/inbox", params={"$select": "id,totalItemCount"}
        )
        return f"Graph: Inbox reachable ({data.get('totalItemCount', 0)} item(s))"

    def item_count(self, folder: str) -> int:
        """The folder's ``totalItemCount`` (one GET)."""
        ref = quote(self._folder_ref(folder))
        data = self._request("GET", f"{self._user}/mailFolders/{ref}", params={"$select": "id,totalItemCount"})
        return int(data.get("totalItemCount") or 0)

    # --- auth ------------------------------------------------------------------------------------------

    def _msal_app(self) -> msal.ConfidentialClientApplication:
        with self._app_lock:
            if self._app is None:
                microsoft = (urlsplit(self.login_url).hostname or "").lower() in MICROSOFT_LOGIN_HOSTS
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self.client_id,
                        client_credential=self._credential,
                        authority=f"{self.login_url}/{self.tenant_id}",
                        # Not Microsoft's login host (the stand-in, a proxy): no calls to Microsoft's discovery.
                        validate_authority=microsoft,
                        instance_discovery=microsoft,
                        http_client=self._session,
                        token_cache=self._cache,
                        timeout=self._timeout,
                    )
                except requests.RequestException as e:
                    raise MailUnavailable(
                        f"mailbox {self.address}: identity platform unreachable: {e}"
                    ) from e
                except ValueError as e:
                    raise MailAuthError(self._auth_message(f"{e} {e.__context__ or ''}")) from e
            return self._app

    def _auth_message(self, text: str) -> str:
        found = _AADSTS_TEXT.search(text)
        detail = found.group(0).strip() if found else (text.strip().splitlines() or ["no detail"])[0]
        return (
            f"mailbox {self.address}: the Microsoft identity platform refused app client {self.client_id} "
            f"in tenant {self.tenant_id}: {detail[:300]}"
        )

    def _token(self) -> str:
        try:
            result = self._msal_app().acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as e:
            raise MailUnavailable(f"mailbox {self.address}: identity platform unreachable: {e}") from e
        if "access_token" not in result:
            detail = f"{result.get('error', '')}: {result.get('error_description', '')}"
            if str(result.get("error", "")) in ("temporarily_unavailable", "server_error"):
                raise MailUnavailable(self._auth_message(detail))
            raise MailAuthError(self._auth_message(detail))
        return str(result["access_token"])

    def _drop_token(self) -> None:
        """Forget cached access tokens: the next request asks the identity platform again."""
        for at in list(self._cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            self._cache.remove_at(at)

    # --- HTTP ------------------------------------------------------------------------------------------

    def _headers(self, token: str, extra: dict[str, str] | None) -> dict[str, str]:
        prefer = ['IdType="ImmutableId"', *([extra["Prefer"]] if extra and "Prefer" in extra else [])]
        return {**(extra or {}), "Authorization": f"Bearer {token}", "Prefer": ", ".join(prefer)}

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One Graph call with auth, retries and error mapping; returns the JSON body (``{}`` when empty)."""
        if "://" not in url:
            url = f"{self.graph_url}{url}"
        elif not url.startswith(f"{self.graph_url}/"):
            # nextLink/deltaLink come from the server: never send our token to another host.
            raise MailUnavailable(f"mailbox {self.address}: Graph handed out a link outside {self.graph_url}")
        reauthenticated = False
        attempt = 0
        while True:
            token = self._token()
            try:
                with self._slots:
                    resp = self._http.request(
                        method, url, params=params, json=body, headers=self._headers(token, headers)
                    )
            except httpx.TimeoutException as e:
                raise MailUnavailable(f"mailbox {self.address}: Graph timed out ({type(e).__name__})") from e
            except httpx.HTTPError as e:
                raise MailUnavailable(f"mailbox {self.address}: Graph unreachable: {e}") from e
            if resp.status_code == 401 and not reauthenticated:
                log.info(
                    "mailbox %s: Graph answered 401; getting a new token and retrying once", self.address
                )
                self._drop_token()
                reauthenticated = True
                continue
            if resp.status_code in RETRY_STATUSES:
                wait = self._retry_after(resp.headers.get("Retry-After"), attempt)
                if attempt < self.max_retries and wait <= self.max_retry_wait:
                    attempt += 1
                    log.info(
                        "mailbox %s: Graph answered %d; retrying in %.1f s (%d/%d)",
                        self.address,
                        resp.status_code,
                        wait,
                        attempt,
                        self.max_retries,
                    )
                    self.sleep(wait)
                    continue
            if resp.status_code >= 400:
                raise self._error(resp.status_code, self._json(resp, allow_empty=True), resp.headers, attempt)
            return self._json(resp, allow_empty=True)

    @staticmethod
    def _retry_after(value: str | None, attempt: int) -> float:
        try:
            return max(float(value), 0.0) if value is not None else float(2**attempt)
        except ValueError:
            return float(2**attempt)

    def _json(self, resp: httpx.Response, *, allow_empty: bool = False) -> dict[str, Any]:
        if not resp.content and allow_empty:
            return {}
        try:
            data = resp.json()
        except ValueError as e:
            raise MailUnavailable(
                f"mailbox {self.address}: Graph answered HTTP {resp.status_code} without JSON"
            ) from e
        return data if isinstance(data, dict) else {"value": data}

    def _error(self, status: int, payload: dict[str, Any], headers: Any, attempt: int = 0) -> MailError:
        """The MailError for a Graph error answer."""
        err = payload.get("error") if isinstance(payload.get("error"), dict) else {}
        code, message = str(err.get("code") or f"HTTP {status}"), str(err.get("message") or "")
        text = f"mailbox {self.address}: Graph {status} {code}: {message}".rstrip(": ")
        if status in RETRY_STATUSES:
            wait = self._retry_after((headers or {}).get("Retry-After"), attempt)
            return MailThrottled(wait, f"mailbox {self.address}: Graph {status} {code}")
        if status == 401:
            return MailAuthError(f"{text} (a new token was refused too)")
        if status == 403:
            return MailError(
                f"{text}: the app may not reach this mailbox (outside its Exchange Online RBAC for "
                "Applications management scope, or Mail.ReadWrite/Mail.Send not granted)"
            )
        if status == 404:
            return MailNotFound(text)
        if status == 410:
            return MailSyncStateInvalid(text)
        if status >= 500:
            return MailUnavailable(text)
        return MailError(text)

    def _batch_get(self, urls: list[str]) -> list[dict[str, Any] | None]:
        """GET each relative URL through JSON ``$batch`` (20 per request); None for 404s."""
        out: list[dict[str, Any] | None] = [None] * len(urls)
        pending = list(range(len(urls)))
        attempt = 0
        while pending:
            retry: list[int] = []
            wait = 0.0
            for start in range(0, len(pending), BATCH_LIMIT):
                chunk = pending[start : start + BATCH_LIMIT]
                body = {
                    "requests": [
                        {
                            "id": str(i),
                            "method": "GET",
                            "url": urls[i],
                            "headers": {"Prefer": 'IdType="ImmutableId"'},
                        }
                        for i in chunk
                    ]
                }
                answer = self._request("POST", "/$batch", body=body)
                for r in answer.get("responses") or []:
                    i, status = int(r["id"]), int(r.get("status") or 0)
                    if status == 200:
                        out[i] = r.get("body") or {}
                    elif status in RETRY_STATUSES:
                        retry.append(i)
                        wait = max(
                            wait, self._retry_after((r.get("headers") or {}).get("Retry-After"), attempt)
                        )
                    elif status != 404:
                        raise self._error(status, r.get("body") or {}, r.get("headers") or {})
            if not retry:
                break
            if attempt >= self.max_retries or wait > self.max_retry_wait:
                raise MailThrottled(wait, f"mailbox {self.address}: Graph throttled a batch")
            attempt += 1
            self.sleep(wait)
            pending = retry
        return out

    # --- folders ---------------------------------------------------------------------------------------

    def _folder_ref(self, name: str, create: bool = False) -> str:
        """The URL segment for a logical folder: a well-known name, or the id of a child of the Inbox."""
        key = name.lower()
        if key in WELL_KNOWN:
            return WELL_KNOWN[key]
        if key in self._folder_ids:
            return self._folder_ids[key]
        found = self._find_child(name)
        if found is None and create:
            log.info("creating mail folder %r under the Inbox in %s", name, self.address)
            try:
                found = self._request(
                    "POST", f"{self._user}/mailFolders/inbox/childFolders", body={"displayName": name}
                )
            except MailError as e:
                if "ErrorFolderExists" not in str(e):
                    raise
                found = self._find_child(name)  # created by someone else meanwhile
        if found is None:
            raise MailNotFound(f"no folder named {name!r} under the Inbox of {self.address}")
        self._folder_ids[key] = str(found["id"])
        self._folder_names[str(found["id"])] = str(found.get("displayName") or name)
        return self._folder_ids[key]

    def _find_child(self, name: str) -> dict[str, Any] | None:
        listed = self._request(
            "GET",
            f"{self._user}/mailFolders/inbox/childFolders",
            params={"$filter": f"displayName eq '{_quote_odata(name)}'", "$select": "id,displayName"},
        )
        return next(
            (f for f in listed.get("value") or [] if str(f.get("displayName", "")).lower() == name.lower()),
            None,
        )

    def _logical_folder(self, folder_id: str | None) -> str:
        """The logical name of a parentFolderId ("inbox", "drafts", "sent" or a display name)."""
        if not folder_id:
            return ""
        if folder_id not in self._folder_names:
            for logical, wk in (("inbox", "inbox"), ("drafts", "drafts"), ("sent", "sentitems")):
                if logical not in self._folder_ids:
                    got = self._request(
                        "GET", f"{self._user}/mailFolders/{wk}", params={"$select": "id,displayName"}
                    )
                    self._folder_ids[logical] = str(got["id"])
                    self._folder_names[str(got["id"])] = logical
            if folder_id not in self._folder_names:
                try:
                    got = self._request(
                        "GET",
                        f"{self._user}/mailFolders/{quote(folder_id)}",
                        params={"$select": "id,displayName"},
                    )
                    self._folder_names[folder_id] = str(got.get("displayName") or folder_id)
                except MailNotFound:
                    self._folder_names[folder_id] = folder_id
        return self._folder_names[folder_id]

    # --- reading ---------------------------------------------------------------------------------------

    def _message_path(self, item_id: str) -> str:
        return f"/users/{quote(self.address)}/messages/{quote(item_id, safe='')}"

    def _message_params(self) -> dict[str, str]:
        return {"$select": MESSAGE_SELECT, "$expand": EXPAND_IN_REPLY_TO}

    def _message_url(self, item_id: str) -> str:
        """A relative URL for ``$batch``."""
        return f"{self._message_path(item_id)}?$select={MESSAGE_SELECT}&$expand={EXPAND_IN_REPLY_TO}"

    def _to_message(self, data: dict[str, Any]) -> MailMessage:
        body = data.get("body") or {}
        content = str(body.get("content") or "")
        is_html = str(body.get("contentType") or "").lower() == "html"
        author = data.get("from") or data.get("sender") or {}
        in_reply_to = next(
            (
                p.get("value")
                for p in data.get("singleValueExtendedProperties") or []
                if p.get("id") == IN_REPLY_TO_PROP
            ),
            None,
        )
        return MailMessage(
            item_id=str(data["id"]),
            change_key=str(data.get("changeKey") or ""),
            internet_message_id=str(data.get("internetMessageId") or ""),
            subject=str(data.get("subject") or ""),
            sender_email=_addr(author),
            sender_name=str((author.get("emailAddress") or {}).get("name") or ""),
            to=[_addr(r) for r in data.get("toRecipients") or []],
            cc=[_addr(r) for r in data.get("ccRecipients") or []],
            received_at=_parse_time(data.get("receivedDateTime")),
            body_text=html_to_text(content) if is_html else content,
            body_html=content if is_html else None,
            categories=[str(c) for c in data.get("categories") or []],
            folder=self._logical_folder(data.get("parentFolderId")),
            is_read=bool(data.get("isRead")),
            in_reply_to=in_reply_to,
            conversation_id=data.get("conversationId"),
            has_attachments=bool(data.get("hasAttachments")),
            size=len(content),
        )

    def _get(self, item_id: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", self._message_path(item_id), params=self._message_params())
        except MailNotFound:
            return None

    def get_message(self, item_id: str) -> MailMessage | None:
        """The message with ``item_id``, or None if it no longer exists."""
        data = self._get(item_id)
        return self._to_message(data) if data is not None else None

    def _fetch(self, ids: list[str]) -> dict[str, MailMessage]:
        """Full messages for ``ids`` (one GET, or ``$batch`` for several); vanished ones are left out."""
        if len(ids) == 1:
            data = self._get(ids[0])
            return {ids[0]: self._to_message(data)} if data is not None else {}
        found = self._batch_get([self._message_url(i) for i in ids])
        return {i: self._to_message(d) for i, d in zip(ids, found, strict=True) if d is not None}

    def sync_folder(self, folder: str, sync_state: str | None, max_changes: int = 100) -> SyncResult:
        """One page of the folder's messages delta since ``sync_state`` (plus a ``$batch`` when items changed)."""
        state = self._load_state(sync_state)
        started = datetime.now(UTC)
        if state is None:
            url = f"{self._user}/mailFolders/{quote(self._folder_ref(folder))}/messages/delta"
            params: dict[str, str] | None = {"$select": DELTA_SELECT}
            if folder.lower() == "inbox" and self.first_sync_days is not None:
                cutoff = started - timedelta(days=self.first_sync_days)
                params["$filter"] = f"receivedDateTime ge {cutoff.strftime('%Y-%m-%dT%H:%M:%SZ')}"
            state = {"initial": True, "since": None, "round": started.isoformat()}
        else:
            url, params = state["link"], None
            if state.get("delta"):  # a new round begins at a deltaLink
                state = {"initial": False, "since": state["round"], "round": started.isoformat()}
        page = self._request(
            "GET", url, params=params, headers={"Prefer": f"odata.maxpagesize={max(1, max_changes)}"}
        )
        since = _parse_time(state["since"]) - NEW_ITEM_MARGIN if state.get("since") else None
        changes: list[SyncChange] = []
        for entry in page.get("value") or []:
            item_id = str(entry.get("id") or "")
            if not item_id:
                continue
            if "@removed" in entry:
                changes.append(SyncChange("delete", item_id))
            elif state["initial"]:
                changes.append(SyncChange("create", item_id))
            else:
                received = _parse_time(entry.get("receivedDateTime"))
                if since is not None and received >= since:
                    changes.append(SyncChange("create", item_id))  # new since the previous round, or recent
                changes.append(SyncChange("update", item_id))
        wanted = list(dict.fromkeys(c.item_id for c in changes if c.kind != "delete"))
        fetched = self._fetch(wanted) if wanted else {}
        for change in changes:
            change.message = fetched.get(change.item_id)
        changes = [c for c in changes if c.kind == "delete" or c.message is not None]
        next_link, delta_link = page.get("@odata.nextLink"), page.get("@odata.deltaLink")
        if not (next_link or delta_link):
            raise MailUnavailable(
                f"mailbox {self.address}: Graph delta answered without a next or delta link"
            )
        new_state = {**state, "link": next_link or delta_link, "delta": not next_link}
        return SyncResult(changes, json.dumps(new_state, separators=(",", ":")), bool(next_link))

    @staticmethod
    def _load_state(sync_state: str | None) -> dict[str, Any] | None:
        if not sync_state:
            return None
        try:
            state = json.loads(sync_state)
        except ValueError as e:
            # e.g. an EWS sync state left from before the switch to Graph: start over (dedupe keeps history).
            raise MailSyncStateInvalid("the stored sync state is not a Graph delta state") from e
        if not isinstance(state, dict) or not isinstance(state.get("link"), str) or "round" not in state:
            raise MailSyncStateInvalid("the stored sync state is not a Graph delta state")
        return state

    # --- writing ---------------------------------------------------------------------------------------

    def set_categories(self, item_id: str, categories: list[str]) -> None:
        """Replace the message's categories (PATCH)."""
        self._request("PATCH", self._message_path(item_id), body={"categories": list(categories)})

    def move(self, item_id: str, folder_name: str) -> str:
        """Move to ``folder_name`` (created under the Inbox if missing); returns the (immutable) id."""
        target = self._folder_ref(folder_name, create=True)
        moved = self._request("POST", f"{self._message_path(item_id)}/move", body={"destinationId": target})
        return str(moved.get("id") or item_id)

    def create_reply_draft(self, item_id: str, body_text: str) -> str:
        """Save a reply addressed only to the original sender in Drafts (createReply, then PATCH)."""
        original = self._get(item_id)
        if original is None:
            raise MailNotFound(f"no item {item_id!r} in {self.address}")
        sender = _addr(original.get("from") or original.get("sender"))
        if not sender:
            raise MailError(f"item {item_id!r} has no sender to reply to")
        draft = self._request("POST", f"{self._message_path(item_id)}/createReply", body={})
        draft_id = str(draft["id"])
        # createReply follows Reply-To and quotes the original: both are replaced, so neither a Reply-To header
        # nor the original's text can reach the draft.
        self._request(
            "PATCH",
            self._message_path(draft_id),
            body={
                "body": {"contentType": "Text", "content": body_text},
                "toRecipients": [{"emailAddress": {"address": sender}}],
                "ccRecipients": [],
                "bccRecipients": [],
            },
        )
        return draft_id

    def _replies_in(self, folder: str, internet_message_id: str, top: int) -> list[MailMessage]:
        flt = (
            f"singleValueExtendedProperties/Any(ep: ep/id eq '{IN_REPLY_TO_PROP}' and "
            f"ep/value eq '{_quote_odata(internet_message_id)}')"
        )
        listed = self._request(
            "GET",
            f"{self._user}/mailFolders/{folder}/messages",
            params={**self._message_params(), "$filter": flt, "$top": str(top)},
        )
        found = [self._to_message(m) for m in listed.get("value") or []]
        return sorted(found, key=lambda m: m.received_at, reverse=True)

    def find_reply_drafts(self, internet_message_id: str) -> list[MailMessage]:
        """Drafts replying to ``internet_message_id`` (filter on the In-Reply-To property), newest first."""
        return self._replies_in("drafts", internet_message_id, 10)

    def get_draft(self, draft_id: str) -> MailMessage | None:
        """The draft, or None if it was sent, moved out of Drafts or deleted."""
        msg = self.get_message(draft_id)
        return msg if msg is not None and msg.folder == "drafts" else None

    def send_draft(self, draft_id: str) -> None:
        """Send a draft that is still in Drafts; a copy lands in Sent Items."""
        if self.get_draft(draft_id) is None:
            raise MailNotFound(f"item {draft_id!r} is not in Drafts")
        self._request("POST", f"{self._message_path(draft_id)}/send")

    def delete_draft(self, draft_id: str) -> DraftDeletion:
        """Delete a draft that is still in Drafts (GET, then ``DELETE /users/{id}/messages/{id}``: 204); ``gone``
        when Graph knows no such message, ``not a draft`` (left alone) when it is outside Drafts: with immutable
        ids a draft sent from Outlook keeps its id in Sent Items, so the folder is checked before the DELETE."""
        msg = self.get_message(draft_id)
        if msg is None:
            return "gone"
        if msg.folder != "drafts":
            return "not a draft"
        try:
            self._request("DELETE", self._message_path(draft_id))
        except MailNotFound:
            return "gone"
        return "deleted"

    def find_message(self, internet_message_id: str, folders: list[str]) -> MailMessage | None:
        """The message with ``internet_message_id`` anywhere in the mailbox (``/messages`` filtered on
        internetMessageId covers every folder, so ``folders`` is not needed)."""
        listed = self._request(
            "GET",
            f"{self._user}/messages",
            params={
                **self._message_params(),
                "$filter": f"internetMessageId eq '{_quote_odata(internet_message_id)}'",
                "$top": "1",
            },
        )
        found = listed.get("value") or []
        return self._to_message(found[0]) if found else None

    def find_sent_reply(self, internet_message_id: str) -> MailMessage | None:
        """The newest message in Sent Items replying to ``internet_message_id``."""
        found = self._replies_in("sentitems", internet_message_id, 1)
        return found[0] if found else None
