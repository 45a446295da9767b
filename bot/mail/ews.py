"""``EwsMailbox``: the ``Mailbox`` protocol over EWS. The only module in Clawback that imports exchangelib.

Setup never autodiscovers: the endpoint, credentials, auth type and server version are explicit, and the retry
policy fails fast so throttling reaches the caller as ``MailThrottled`` instead of sleeping inside a worker.
Folder objects are resolved once and cached on the instance, so an idle ``sync_folder`` is one SyncFolderItems
request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from exchangelib import (
    BASIC,
    DELEGATE,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FailFast,
    Folder,
    HTMLBody,
    OAuth2Credentials,
    Version,
)
from exchangelib import Mailbox as EwsAddress
from exchangelib.errors import (
    ErrorFolderNotFound,
    ErrorInvalidSyncStateData,
    ErrorItemNotFound,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    EWSError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.folders import SHALLOW, FolderCollection
from exchangelib.items import ID_ONLY, MOVE_TO_DELETED_ITEMS, ReplyToItem
from exchangelib.properties import ItemId, ReferenceItemId
from exchangelib.services import CreateFolder, SendItem, SyncFolderItems
from exchangelib.version import EXCHANGE_2016
from requests.exceptions import RequestException

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

log = logging.getLogger(__name__)

# Fields fetched for every message (GetItem); body and text_body give both the HTML and the plain text.
MESSAGE_FIELDS = (
    "subject",
    "body",
    "text_body",
    "author",
    "sender",
    "to_recipients",
    "cc_recipients",
    "message_id",
    "in_reply_to",
    "conversation_id",
    "datetime_received",
    "categories",
    "is_read",
    "is_draft",
    "has_attachments",
    "size",
    "parent_folder_id",
)
# Logical names of distinguished folders -> the exchangelib Account attribute that resolves them.
DISTINGUISHED = {"inbox": "inbox", "drafts": "drafts", "sent": "sent"}
# Used when the server throttles without saying for how long.
DEFAULT_BACK_OFF_SECONDS = 30.0
_SYNC_KINDS = {"create": "create", "update": "update", "delete": "delete", "read_flag_change": "read_flag"}


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn exchangelib and transport exceptions into ``MailError`` subclasses."""
    try:
        yield
    except MailError:
        raise
    except UnauthorizedError as e:
        raise MailAuthError(str(e)) from e
    except ErrorServerBusy as e:
        # exchangelib re-raises timeouts and 5xx transients as ErrorServerBusy("Reraised from ...").
        if str(e).startswith("Reraised from ErrorTimeoutExpired"):
            raise MailUnavailable(str(e)) from e
        raise MailThrottled(float(e.back_off or DEFAULT_BACK_OFF_SECONDS), str(e) or "server busy") from e
    except ErrorTimeoutExpired as e:
        raise MailUnavailable(str(e)) from e
    except ErrorInvalidSyncStateData as e:
        raise MailSyncStateInvalid(str(e)) from e
    except (ErrorItemNotFound, ErrorFolderNotFound) as e:
        raise MailNotFound(str(e)) from e
    except (RequestException, ConnectionError) as e:
        raise MailUnavailable(str(e)) from e
    except TransportError as e:
        # EWS response codes (ErrorXxx) describe the request: MailError. The rest (malformed answers, unknown
        # SOAP faults, non-SOAP HTTP 5xx) mean the server is not usable right now: MailUnavailable.
        if type(e).__module__ == "exchangelib.errors" and type(e).__name__.startswith("Error"):
            raise MailError(f"{type(e).__name__}: {e}") from e
        raise MailUnavailable(f"{type(e).__name__}: {e}") from e
    except EWSError as e:
        raise MailError(f"{type(e).__name__}: {e}") from e


def _raise_first_error(results: list) -> list:
    """exchangelib returns per-item errors as exception objects in result lists; raise the first one."""
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


def _address(mb: EwsAddress | None) -> str:
    return (mb.email_address or "") if mb is not None else ""


def _reply_subject(subject: str | None) -> str:
    """``RE: subject``, without stacking prefixes."""
    subject = subject or ""
    return subject if subject[:3].lower() == "re:" else f"RE: {subject}"


class EwsMailbox:
    """A mailbox reached over EWS with basic, NTLM or OAuth2 client-credential auth."""

    def __init__(
        self,
        address: str,
        ews_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        tenant_id: str | None = None,
        auth_type: str = "basic",
        timeout: float = 30.0,
        max_connections: int = 1,
    ) -> None:
        self.address = address
        config = Configuration(
            service_endpoint=ews_url,
            credentials=self._credentials(username, password, client_id, client_secret, tenant_id),
            auth_type={"basic": BASIC, "ntlm": NTLM}.get(auth_type, BASIC) if not client_id else OAUTH2,
            version=Version(build=EXCHANGE_2016),
            retry_policy=FailFast(),
            # One connection: exchangelib then raises timeouts as-is instead of shrinking a pool and retrying.
            max_connections=max_connections,
        )
        self._account = Account(
            primary_smtp_address=address, config=config, autodiscover=False, access_type=DELEGATE
        )
        # exchangelib shares Protocol objects per endpoint+credentials; the timeout is per instance.
        self._account.protocol.TIMEOUT = timeout
        self._folders: dict[str, Folder] = {}  # logical name (lower-case) -> folder
        self._folder_names: dict[str, str] = {}  # folder id -> logical name

    @staticmethod
    def _credentials(
        username: str | None,
        password: str | None,
        client_id: str | None,
        client_secret: str | None,
        tenant_id: str | None,
    ) -> Credentials | OAuth2Credentials:
        if client_id:
            if not (client_secret and tenant_id):
                raise ValueError("OAuth2 needs client_id, client_secret and tenant_id")
            return OAuth2Credentials(client_id=client_id, client_secret=client_secret, tenant_id=tenant_id)
        if not (username and password):
            raise ValueError("basic/NTLM auth needs username and password")
        return Credentials(username=username, password=password)

    def close(self) -> None:
        """Close pooled HTTP sessions."""
        self._account.protocol.close()

    def check(self) -> str:
        """One GetFolder of the Inbox, credentials included (``clawback doctor``)."""
        with translate_errors():
            folder = self._account.inbox
            folder.refresh()
        return f"EWS: Inbox reachable ({folder.total_count or 0} item(s))"

    def item_count(self, folder: str) -> int:
        """The folder's ``TotalCount`` (one GetFolder)."""
        found = self._folder(folder)
        with translate_errors():
            found.refresh()
        return int(found.total_count or 0)

    # --- folders ---------------------------------------------------------------------------------------

    def _folder(self, name: str, create: bool = False) -> Folder:
        """The folder for a logical name; custom folders live directly under the Inbox."""
        key = name.lower()
        if key in self._folders:
            return self._folders[key]
        with translate_errors():
            if key in DISTINGUISHED:
                folder = getattr(self._account, DISTINGUISHED[key])
            else:
                folder = self._find_child(self._folder("inbox"), name) or (
                    self._create_child(self._folder("inbox"), name) if create else None
                )
        if folder is None:
            raise MailNotFound(f"no folder named {name!r} under the Inbox")
        self._folders[key] = folder
        self._folder_names[folder.id] = key if key in DISTINGUISHED else folder.name
        return folder

    def _find_child(self, parent: Folder, name: str) -> Folder | None:
        """A direct child of ``parent`` by display name (case-insensitive)."""
        for child in FolderCollection(account=self._account, folders=[parent]).find_folders(depth=SHALLOW):
            if isinstance(child, Exception):
                raise child
            if (child.name or "").lower() == name.lower():
                return child
        return None

    def _create_child(self, parent: Folder, name: str) -> Folder:
        """Create a mail folder under ``parent``."""
        log.info("creating mail folder %r under %r in %s", name, parent.name, self.address)
        created = _raise_first_error(
            list(
                CreateFolder(account=self._account).call(
                    parent_folder=parent, folders=[Folder(parent=parent, name=name)]
                )
            )
        )
        folder = created[0]
        folder.name = name
        return folder

    def _logical_folder(self, folder_id: str | None) -> str:
        """The logical name of a folder id seen in an item; unknown folders are looked up once."""
        if not folder_id:
            return ""
        if folder_id not in self._folder_names:
            for key in DISTINGUISHED:
                self._folder(key)  # resolving the distinguished folders fills the map
            if folder_id not in self._folder_names:
                self._folder_names[folder_id] = self._folder_name_by_id(folder_id)
        return self._folder_names[folder_id]

    def _folder_name_by_id(self, folder_id: str) -> str:
        """Display name of a folder by id (one GetFolder)."""
        with translate_errors():
            found = list(
                FolderCollection(account=self._account, folders=[Folder(id=folder_id)]).get_folders()
            )
        return found[0].name if found and not isinstance(found[0], Exception) else folder_id

    # --- reading ----------------------------------------------------------------------------------------

    def _to_message(self, item) -> MailMessage:  # noqa: ANN001 - an exchangelib Message
        """Map an exchangelib Message to a ``MailMessage``."""
        body = item.body
        is_html = isinstance(body, HTMLBody)
        author = item.author or item.sender
        received = item.datetime_received or datetime.now(UTC)
        return MailMessage(
            item_id=item.id,
            change_key=item.changekey or "",
            internet_message_id=item.message_id or "",
            subject=item.subject or "",
            sender_email=_address(author),
            sender_name=(author.name or "") if author is not None else "",
            to=[_address(r) for r in item.to_recipients or []],
            cc=[_address(r) for r in item.cc_recipients or []],
            received_at=datetime.fromtimestamp(received.timestamp(), UTC),  # plain datetime, not EWSDateTime
            body_text=item.text_body or ("" if is_html else str(body or "")),
            body_html=str(body) if is_html else None,
            categories=list(item.categories or []),
            folder=self._logical_folder(item.parent_folder_id.id if item.parent_folder_id else None),
            is_read=bool(item.is_read),
            in_reply_to=item.in_reply_to,
            conversation_id=item.conversation_id.id if item.conversation_id else None,
            has_attachments=bool(item.has_attachments),
            size=item.size or 0,
        )

    def _fetch(self, ids: list[str]) -> dict[str, object]:
        """GetItem for ``ids`` (batched by exchangelib); missing items are left out."""
        if not ids:
            return {}
        with translate_errors():
            results = list(
                self._account.fetch(
                    ids=[(i, None) for i in ids], folder=self._folder("inbox"), only_fields=MESSAGE_FIELDS
                )
            )
        found: dict[str, object] = {}
        for item_id, result in zip(ids, results, strict=True):
            if isinstance(result, ErrorItemNotFound):
                continue
            if isinstance(result, Exception):
                with translate_errors():
                    raise result
            found[item_id] = result
        return found

    def get_message(self, item_id: str) -> MailMessage | None:
        """The message with ``item_id``, or None if it no longer exists."""
        item = self._fetch([item_id]).get(item_id)
        return self._to_message(item) if item is not None else None

    def sync_folder(self, folder: str, sync_state: str | None, max_changes: int = 100) -> SyncResult:
        """One page of changes since ``sync_state``: a SyncFolderItems, plus a GetItem if items changed."""
        target = self._folder(folder)
        service = SyncFolderItems(account=self._account)
        with translate_errors():
            raw = _raise_first_error(
                list(
                    service.call(
                        folder=target,
                        shape=ID_ONLY,
                        additional_fields=set(),
                        sync_state=sync_state,
                        ignore=None,
                        max_changes_returned=max_changes,
                        sync_scope=None,
                    )
                )
            )
        changes = [self._sync_change(kind, obj) for kind, obj in raw]
        fetched = self._fetch([c.item_id for c in changes if c.kind in ("create", "update")])
        for change in changes:
            item = fetched.get(change.item_id)
            if item is not None:
                change.message = self._to_message(item)
        # Items that vanished between sync and fetch are reported when the next sync sees their deletion.
        changes = [c for c in changes if c.kind not in ("create", "update") or c.message is not None]
        return SyncResult(changes, service.sync_state, not service.includes_last_item_in_range)

    @staticmethod
    def _sync_change(kind: str, obj) -> SyncChange:  # noqa: ANN001 - exchangelib item, ItemId or tuple
        """A SyncChange without its message yet."""
        mapped = _SYNC_KINDS[kind]
        if mapped == "read_flag":
            item_id, is_read = obj
            return SyncChange("read_flag", item_id.id, None, is_read=is_read)
        if mapped == "delete":
            return SyncChange("delete", obj.id)
        return SyncChange(mapped, obj.id)  # type: ignore[arg-type]

    # --- writing ----------------------------------------------------------------------------------------

    def _require(self, item_id: str):  # noqa: ANN202 - an exchangelib Message
        """Fetch an item or raise ``MailNotFound``."""
        item = self._fetch([item_id]).get(item_id)
        if item is None:
            raise MailNotFound(f"no item {item_id!r} in {self.address}")
        return item

    def set_categories(self, item_id: str, categories: list[str]) -> None:
        """Replace the message's categories (GetItem for the change key, then UpdateItem)."""
        with translate_errors():
            found = list(
                self._account.fetch(
                    ids=[(item_id, None)], folder=self._folder("inbox"), only_fields=["categories"]
                )
            )
            item = _raise_first_error(found)[0]
            item.categories = list(categories) or None
            item.save(update_fields=["categories"])

    def move(self, item_id: str, folder_name: str) -> str:
        """Move to ``folder_name`` (created under the Inbox if missing); returns the new item id."""
        target = self._folder(folder_name, create=True)
        with translate_errors():
            results = _raise_first_error(
                list(self._account.bulk_move(ids=[(item_id, None)], to_folder=target))
            )
        new_id = results[0]
        return new_id[0] if isinstance(new_id, tuple) else new_id.id

    def create_reply_draft(self, item_id: str, body_text: str) -> str:
        """Save a reply addressed only to the original sender in Drafts; returns the draft id."""
        original = self._require(item_id)
        sender = original.author or original.sender
        if sender is None or not sender.email_address:
            raise MailError(f"item {item_id!r} has no sender to reply to")
        # Recipients are explicit so Reply-To headers or addresses in the body can never widen the audience.
        reply = ReplyToItem(
            account=self._account,
            reference_item_id=ReferenceItemId(id=original.id, changekey=original.changekey),
            subject=_reply_subject(original.subject),
            new_body=body_text,
            to_recipients=[EwsAddress(email_address=sender.email_address)],
        )
        with translate_errors():
            saved = reply.save(self._folder("drafts"))
        if isinstance(saved, Exception):
            with translate_errors():
                raise saved
        return saved.id if hasattr(saved, "id") else saved[0]

    def find_reply_drafts(self, internet_message_id: str) -> list[MailMessage]:
        """Drafts replying to ``internet_message_id`` (FindItem on InReplyTo, then GetItem), newest first."""
        with translate_errors():
            ids = list(
                self._folder("drafts")
                .filter(in_reply_to=internet_message_id)
                .order_by("-datetime_received")
                .values_list("id", flat=True)[:10]
            )
        found = self._fetch(ids)
        return [self._to_message(found[i]) for i in ids if i in found]

    def get_draft(self, draft_id: str) -> MailMessage | None:
        """The draft, or None if it was sent, moved out of Drafts or deleted."""
        msg = self.get_message(draft_id)
        return msg if msg is not None and msg.folder == "drafts" else None

    def send_draft(self, draft_id: str) -> None:
        """Send a draft that is still in Drafts; a copy lands in Sent Items."""
        draft = self._require(draft_id)
        if self._logical_folder(draft.parent_folder_id.id if draft.parent_folder_id else None) != "drafts":
            raise MailNotFound(f"item {draft_id!r} is not in Drafts")
        with translate_errors():
            # Exchange requires the current ChangeKey to send an item.
            results = SendItem(account=self._account).call(
                items=[ItemId(id=draft.id, changekey=draft.changekey)], saved_item_folder=self._folder("sent")
            )
            _raise_first_error(list(results))

    def delete_draft(self, draft_id: str) -> DraftDeletion:
        """Move a draft that is still in Drafts to Deleted Items (GetItem, then DeleteItem with DeleteType
        MoveToDeletedItems and its current ChangeKey); ``gone`` when no such item exists, ``not a draft`` (left
        alone) when it is outside Drafts."""
        msg = self.get_message(draft_id)
        if msg is None:
            return "gone"
        if msg.folder != "drafts":
            return "not a draft"
        try:
            with translate_errors():
                _raise_first_error(
                    list(
                        self._account.bulk_delete(
                            ids=[(draft_id, msg.change_key or None)], delete_type=MOVE_TO_DELETED_ITEMS
                        )
                    )
                )
        except MailNotFound:
            return "gone"
        return "deleted"

    def find_message(self, internet_message_id: str, folders: list[str]) -> MailMessage | None:
        """The message with ``internet_message_id`` in the Inbox or one of ``folders`` (one FindItem over them
        all on message:InternetMessageId, then GetItem); folders that do not exist are left out."""
        targets = []
        for name in dict.fromkeys(["inbox", *folders]):
            try:
                targets.append(self._folder(name))
            except MailNotFound:
                continue
        with translate_errors():
            ids = list(
                FolderCollection(account=self._account, folders=targets)
                .filter(message_id=internet_message_id)
                .values_list("id", flat=True)[:1]
            )
        return self.get_message(ids[0]) if ids else None

    def find_sent_reply(self, internet_message_id: str) -> MailMessage | None:
        """The newest message in Sent Items replying to ``internet_message_id`` (FindItem, then GetItem)."""
        with translate_errors():
            ids = list(
                self._folder("sent")
                .filter(in_reply_to=internet_message_id)
                .order_by("-datetime_received")
                .values_list("id", flat=True)[:1]
            )
        return self.get_message(ids[0]) if ids else None
