"""A local Exchange Web Services (EWS) stand-in: a real SOAP-over-HTTP server with a seeded mailbox.

It answers the subset of EWS that ``bot.mail.ews.EwsMailbox`` (through exchangelib) uses: GetFolder,
FindFolder, CreateFolder, SyncFolderItems, FindItem, GetItem, UpdateItem, MoveItem, CreateItem, SendItem,
DeleteItem and ResolveNames. Tests drive the mailbox directly (``add_message``, ``move``, ``set_categories``,
``delete``) to play the owner acting in Outlook, and inject failures with ``fail_next``.

Sync states are opaque tokens encoding (folder id, change sequence number): every change to an item stamps
it with a new global sequence number, and deletions leave per-folder tombstones, so an idle sync scans one
folder without building any XML for unchanged items.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import itertools
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.standins.base import QuietHandler, RecordedRequest, StandInServer

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"

ET.register_namespace("s", SOAP_NS)
ET.register_namespace("m", M_NS)
ET.register_namespace("t", T_NS)
ET.register_namespace("e", E_NS)

FAILURE_KINDS = ("server_busy", "auth", "http_500")
DEFAULT_BACK_OFF_MS = 30_000

# Distinguished folders the stand-in creates: (distinguished id, display name, parent distinguished id).
_DISTINGUISHED = (
    ("root", "Root", None),
    ("msgfolderroot", "Top of Information Store", "root"),
    ("inbox", "Inbox", "msgfolderroot"),
    ("drafts", "Drafts", "msgfolderroot"),
    ("sentitems", "Sent Items", "msgfolderroot"),
    ("deleteditems", "Deleted Items", "msgfolderroot"),
    ("outbox", "Outbox", "msgfolderroot"),
    ("junkemail", "Junk Email", "msgfolderroot"),
)
# Logical names tests may use for distinguished folders.
_ALIASES = {"sent": "sentitems", "deleted": "deleteditems", "junk": "junkemail"}


def _t(tag: str) -> str:
    return f"{{{T_NS}}}{tag}"


def _m(tag: str) -> str:
    return f"{{{M_NS}}}{tag}"


def _new_id(prefix: str) -> str:
    """An opaque, base64-looking EWS id."""
    return prefix + base64.b64encode(uuid.uuid4().bytes).decode().rstrip("=").replace("/", "_")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bool(text: str | None) -> bool:
    return (text or "").strip().lower() == "true"


@dataclass
class Folder:
    """A mailbox folder."""

    folder_id: str
    name: str
    parent_id: str | None
    distinguished: str | None = None
    change_key: str = "AQAAAA=="


@dataclass
class Item:
    """A message held in the stand-in mailbox."""

    item_id: str
    folder_id: str
    subject: str
    sender_email: str
    sender_name: str
    to: list[str]
    cc: list[str]
    body_text: str
    body_html: str | None
    received: datetime
    internet_message_id: str
    in_reply_to: str | None = None
    conversation_id: str = ""
    categories: list[str] = field(default_factory=list)
    is_read: bool = False
    is_draft: bool = False
    attachments: list[str] = field(default_factory=list)
    created_seq: int = 0
    seq: int = 0
    change_n: int = 0

    @property
    def change_key(self) -> str:
        """Changes with every modification, as Exchange's ChangeKey does."""
        return f"CQAAAB{self.change_n:08d}"

    @property
    def size(self) -> int:
        """Approximate MIME size in bytes."""
        return (
            512
            + len(self.subject)
            + len(self.body_text)
            + len(self.body_html or "")
            + 1000 * len(self.attachments)
        )


class EwsFault(Exception):
    """An error to report inside a response message (ResponseClass="Error")."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class Mailbox:
    """The in-memory mailbox: folders, items, change sequence numbers and deletion tombstones."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.lock = threading.RLock()
        self._seq = itertools.count(1)
        self.seq = 0
        self.folders: dict[str, Folder] = {}
        self.by_distinguished: dict[str, str] = {}
        self.items: dict[str, Item] = {}
        self.folder_items: dict[str, dict[str, Item]] = {}
        # folder id -> list of (seq at deletion, item id, item's created seq)
        self.tombstones: dict[str, list[tuple[int, str, int]]] = {}
        for dist, name, parent in _DISTINGUISHED:
            self.add_folder(name, self.by_distinguished.get(parent) if parent else None, distinguished=dist)

    def next_seq(self) -> int:
        """Stamp for one change."""
        self.seq = next(self._seq)
        return self.seq

    def add_folder(self, name: str, parent_id: str | None, distinguished: str | None = None) -> Folder:
        """Create a folder under ``parent_id``."""
        f = Folder(_new_id("AAMkF"), name, parent_id, distinguished)
        self.folders[f.folder_id] = f
        self.folder_items[f.folder_id] = {}
        self.tombstones[f.folder_id] = []
        if distinguished:
            self.by_distinguished[distinguished] = f.folder_id
        return f

    def resolve(self, name_or_id: str) -> Folder:
        """A folder by id, distinguished id, alias, or display name under the Inbox (case-insensitive)."""
        if name_or_id in self.folders:
            return self.folders[name_or_id]
        key = _ALIASES.get(name_or_id.lower(), name_or_id.lower())
        if key in self.by_distinguished:
            return self.folders[self.by_distinguished[key]]
        for f in self.folders.values():
            if f.name.lower() == name_or_id.lower() and not f.distinguished:
                return f
        raise KeyError(name_or_id)

    def insert(self, item: Item) -> Item:
        """Put a new item in its folder, stamping it as created now."""
        item.created_seq = item.seq = self.next_seq()
        self.items[item.item_id] = item
        self.folder_items[item.folder_id][item.item_id] = item
        return item

    def touch(self, item: Item) -> None:
        """Record a modification of ``item``."""
        item.seq = self.next_seq()
        item.change_n += 1

    def remove(self, item_id: str) -> Item:
        """Take an item out of its folder, leaving a tombstone for sync."""
        item = self.get(item_id)
        del self.items[item_id]
        del self.folder_items[item.folder_id][item_id]
        self.tombstones[item.folder_id].append((self.next_seq(), item_id, item.created_seq))
        return item

    def get(self, item_id: str) -> Item:
        """An item by id or raise ``EwsFault(ErrorItemNotFound)``."""
        try:
            return self.items[item_id]
        except KeyError:
            raise EwsFault("ErrorItemNotFound", "The specified object was not found in the store.") from None

    def move(self, item_id: str, folder_id: str) -> Item:
        """Move an item; like Exchange, the moved item gets a new id."""
        old = self.remove(item_id)
        old.item_id = _new_id("AAMkI")
        old.folder_id = folder_id
        old.change_n += 1
        return self.insert(old)

    def changes_since(self, folder_id: str, since: int) -> list[tuple[int, str, Any]]:
        """(seq, kind, item or item id) for every change in the folder after ``since``, oldest first."""
        out: list[tuple[int, str, Any]] = []
        for item in self.folder_items[folder_id].values():
            if item.seq > since:
                out.append((item.seq, "Create" if item.created_seq > since else "Update", item))
        for seq, item_id, created in self.tombstones[folder_id]:
            # An item created and deleted since the last sync was never seen by the client.
            if seq > since and created <= since:
                out.append((seq, "Delete", item_id))
        out.sort(key=lambda c: c[0])
        return out


# ---------------------------------------------------------------------------------------------------------
# XML rendering


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _mailbox_el(parent: ET.Element, tag: str, email: str, name: str | None = None) -> None:
    mb = _sub(_sub(parent, _t(tag)), _t("Mailbox")) if tag else _sub(parent, _t("Mailbox"))
    _sub(mb, _t("Name"), name or email)
    _sub(mb, _t("EmailAddress"), email)
    _sub(mb, _t("RoutingType"), "SMTP")
    _sub(mb, _t("MailboxType"), "OneOff")


def _recipients_el(parent: ET.Element, tag: str, addresses: list[str]) -> None:
    if addresses:
        el = _sub(parent, _t(tag))
        for a in addresses:
            _mailbox_el(el, "", a)


def render_item(parent: ET.Element, item: Item, id_only: bool = False) -> None:
    """Append a ``t:Message`` for ``item``."""
    msg = _sub(parent, _t("Message"))
    _sub(msg, _t("ItemId"), Id=item.item_id, ChangeKey=item.change_key)
    if id_only:
        return
    _sub(msg, _t("ParentFolderId"), Id=item.folder_id, ChangeKey="AQAAAA==")
    _sub(msg, _t("ItemClass"), "IPM.Note")
    _sub(msg, _t("Subject"), item.subject)
    if item.body_html is not None:
        _sub(msg, _t("Body"), item.body_html, BodyType="HTML")
    else:
        _sub(msg, _t("Body"), item.body_text, BodyType="Text")
    if item.attachments:
        atts = _sub(msg, _t("Attachments"))
        for n, name in enumerate(item.attachments):
            fa = _sub(atts, _t("FileAttachment"))
            _sub(fa, _t("AttachmentId"), Id=f"{item.item_id}-att{n}")
            _sub(fa, _t("Name"), name)
            _sub(fa, _t("ContentType"), "application/octet-stream")
            _sub(fa, _t("Size"), "1000")
    _sub(msg, _t("DateTimeReceived"), _iso(item.received))
    _sub(msg, _t("Size"), str(item.size))
    if item.categories:
        cats = _sub(msg, _t("Categories"))
        for c in item.categories:
            _sub(cats, _t("String"), c)
    if item.in_reply_to:
        _sub(msg, _t("InReplyTo"), item.in_reply_to)
    _sub(msg, _t("IsSubmitted"), "false")
    _sub(msg, _t("IsDraft"), "true" if item.is_draft else "false")
    _sub(msg, _t("DateTimeSent"), _iso(item.received))
    _sub(msg, _t("DateTimeCreated"), _iso(item.received))
    _sub(msg, _t("HasAttachments"), "true" if item.attachments else "false")
    _sub(msg, _t("ConversationId"), Id=item.conversation_id)
    _sub(msg, _t("TextBody"), item.body_text, BodyType="Text")
    _mailbox_el(msg, "Sender", item.sender_email, item.sender_name)
    _recipients_el(msg, "ToRecipients", item.to)
    _recipients_el(msg, "CcRecipients", item.cc)
    _sub(msg, _t("IsReadReceiptRequested"), "false")
    _mailbox_el(msg, "From", item.sender_email, item.sender_name)
    _sub(msg, _t("InternetMessageId"), item.internet_message_id)
    _sub(msg, _t("IsRead"), "true" if item.is_read else "false")


def render_folder(parent: ET.Element, box: Mailbox, f: Folder) -> None:
    """Append a ``t:Folder`` for ``f``."""
    el = _sub(parent, _t("Folder"))
    _sub(el, _t("FolderId"), Id=f.folder_id, ChangeKey=f.change_key)
    if f.parent_id:
        _sub(el, _t("ParentFolderId"), Id=f.parent_id, ChangeKey="AQAAAA==")
    _sub(el, _t("FolderClass"), "IPF.Note")
    _sub(el, _t("DisplayName"), f.name)
    items = box.folder_items[f.folder_id]
    _sub(el, _t("TotalCount"), str(len(items)))
    children = sum(1 for c in box.folders.values() if c.parent_id == f.folder_id)
    _sub(el, _t("ChildFolderCount"), str(children))
    _sub(el, _t("UnreadCount"), str(sum(1 for i in items.values() if not i.is_read)))


def envelope(body_child: ET.Element | None, api_version: str, fault: ET.Element | None = None) -> bytes:
    """A SOAP envelope with the ServerVersionInfo header exchangelib requires."""
    env = ET.Element(f"{{{SOAP_NS}}}Envelope")
    header = _sub(env, f"{{{SOAP_NS}}}Header")
    _sub(
        header,
        _t("ServerVersionInfo"),
        MajorVersion="15",
        MinorVersion="1",
        MajorBuildNumber="2507",
        MinorBuildNumber="6",
        Version=api_version,
    )
    body = _sub(env, f"{{{SOAP_NS}}}Body")
    body.append(fault if fault is not None else body_child)  # type: ignore[arg-type]
    return ET.tostring(env, encoding="utf-8", xml_declaration=True)


def server_busy_fault(back_off_ms: int) -> ET.Element:
    """The SOAP fault Exchange sends when throttling, with its BackOffMilliseconds hint."""
    fault = ET.Element(f"{{{SOAP_NS}}}Fault")
    _sub(fault, "faultcode", "a:ErrorServerBusy")
    _sub(fault, "faultstring", "The server cannot service this request right now. Try again later.")
    detail = _sub(fault, "detail")
    _sub(detail, f"{{{E_NS}}}ResponseCode", "ErrorServerBusy")
    _sub(detail, f"{{{E_NS}}}Message", "The server cannot service this request right now. Try again later.")
    xml = _sub(detail, _t("MessageXml"))
    _sub(xml, _t("Value"), str(back_off_ms), Name="BackOffMilliseconds")
    return fault


class Responder:
    """Builds ``<m:{Op}Response>`` with one response message per input element."""

    def __init__(self, op: str) -> None:
        self.op = op
        self.root = ET.Element(_m(f"{op}Response"))
        self.messages = _sub(self.root, _m("ResponseMessages"))

    def ok(self) -> ET.Element:
        """A Success/NoError response message to fill in."""
        msg = _sub(self.messages, _m(f"{self.op}ResponseMessage"), ResponseClass="Success")
        _sub(msg, _m("ResponseCode"), "NoError")
        return msg

    def error(self, fault: EwsFault) -> None:
        """An Error response message."""
        msg = _sub(self.messages, _m(f"{self.op}ResponseMessage"), ResponseClass="Error")
        _sub(msg, _m("MessageText"), fault.text)
        _sub(msg, _m("ResponseCode"), fault.code)
        _sub(msg, _m("DescriptiveLinkKey"), "0")
        if self.op == "SyncFolderItems":
            # Exchange keeps these elements in sync errors too, and exchangelib reads them unconditionally.
            _sub(msg, _m("SyncState"), "")
            _sub(msg, _m("IncludesLastItemInRange"), "true")


# ---------------------------------------------------------------------------------------------------------
# Request parsing helpers


def _folder_ref(box: Mailbox, el: ET.Element) -> Folder:
    """Resolve a ``t:FolderId`` or ``t:DistinguishedFolderId`` element."""
    ref = el.get("Id") or ""
    try:
        if el.tag == _t("DistinguishedFolderId"):
            return box.folders[box.by_distinguished[ref]]
        return box.folders[ref]
    except KeyError:
        raise EwsFault("ErrorFolderNotFound", f"The specified folder could not be found: {ref}") from None


def _folder_refs(box: Mailbox, container: ET.Element | None) -> list[ET.Element]:
    if container is None:
        return []
    return [c for c in container if c.tag in (_t("FolderId"), _t("DistinguishedFolderId"))]


def _item_ids(container: ET.Element | None) -> list[str]:
    if container is None:
        return []
    return [c.get("Id", "") for c in container if c.tag in (_t("ItemId"), _t("ReferenceItemId"))]


def _id_only(shape: ET.Element | None) -> bool:
    """Whether a shape asks for ids alone (IdOnly without additional properties)."""
    if shape is None:
        return False
    base = shape.findtext(_t("BaseShape"), "IdOnly")
    extra = shape.find(_t("AdditionalProperties"))
    return base == "IdOnly" and (extra is None or len(extra) == 0)


def _addresses(el: ET.Element | None) -> list[str]:
    if el is None:
        return []
    return [mb.findtext(_t("EmailAddress"), "") for mb in el.iter(_t("Mailbox"))]


_RESTRICTABLE = {
    "item:Subject": lambda i: i.subject,
    "item:InReplyTo": lambda i: i.in_reply_to or "",
    "message:InReplyTo": lambda i: i.in_reply_to or "",
    "message:InternetMessageId": lambda i: i.internet_message_id,
    "item:ItemClass": lambda _i: "IPM.Note",
    "message:IsRead": lambda i: "true" if i.is_read else "false",
}


def _restriction_matches(el: ET.Element, item: Item) -> bool:
    """Evaluate a small subset of EWS restrictions (IsEqualTo, Contains, And, Or, Not) on ``item``."""
    local = el.tag.split("}")[-1]
    if local == "And":
        return all(_restriction_matches(c, item) for c in el)
    if local == "Or":
        return any(_restriction_matches(c, item) for c in el)
    if local == "Not":
        return not _restriction_matches(el[0], item)
    uri_el = el.find(_t("FieldURI"))
    uri = uri_el.get("FieldURI", "") if uri_el is not None else ""
    if uri not in _RESTRICTABLE:
        raise EwsFault("ErrorUnsupportedPathForQuery", f"The stand-in cannot restrict on {uri!r}")
    value = _RESTRICTABLE[uri](item)
    const = el.find(f".//{_t('Constant')}")
    wanted = const.get("Value", "") if const is not None else ""
    if local == "IsEqualTo":
        return value == wanted
    if local == "IsNotEqualTo":
        return value != wanted
    if local == "Contains":
        return wanted.lower() in value.lower()
    raise EwsFault("ErrorUnsupportedQueryFilter", f"The stand-in cannot evaluate {local}")


def _encode_state(folder_id: str, seq: int) -> str:
    return base64.b64encode(f"clawback-sync|{folder_id}|{seq}".encode()).decode()


def _decode_state(state: str, folder_id: str) -> int:
    try:
        tag, fid, seq = base64.b64decode(state.encode(), validate=True).decode().split("|")
        if tag != "clawback-sync" or fid != folder_id:
            raise ValueError(state)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise EwsFault(
            "ErrorInvalidSyncStateData", "Synchronization state data is corrupt or otherwise invalid."
        ) from None


# ---------------------------------------------------------------------------------------------------------
# Operations: each takes (stand-in, request element) and returns the response element.


def op_get_folder(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """GetFolder: one response message per requested folder."""
    r = Responder("GetFolder")
    for ref in _folder_refs(s.box, req.find(_m("FolderIds"))):
        try:
            f = _folder_ref(s.box, ref)
        except EwsFault as e:
            r.error(e)
            continue
        render_folder(_sub(r.ok(), _m("Folders")), s.box, f)
    return r.root


def _descendants(box: Mailbox, parent_id: str, deep: bool) -> list[Folder]:
    out: list[Folder] = []
    queue = [parent_id]
    while queue:
        pid = queue.pop(0)
        for f in box.folders.values():
            if f.parent_id == pid:
                out.append(f)
                if deep:
                    queue.append(f.folder_id)
    return out


def _page(el: ET.Element | None, total: int) -> tuple[int, int]:
    """(offset, max entries) from an IndexedPage*View element."""
    if el is None:
        return 0, total
    offset = int(el.get("Offset", "0"))
    limit = int(el.get("MaxEntriesReturned", str(total or 1)))
    return offset, limit


def op_find_folder(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """FindFolder: children (Shallow) or descendants (Deep) of each parent, with indexed paging."""
    r = Responder("FindFolder")
    deep = req.get("Traversal", "Shallow") == "Deep"
    for ref in _folder_refs(s.box, req.find(_m("ParentFolderIds"))):
        try:
            parent = _folder_ref(s.box, ref)
        except EwsFault as e:
            r.error(e)
            continue
        found = _descendants(s.box, parent.folder_id, deep)
        offset, limit = _page(req.find(_m("IndexedPageFolderView")), len(found))
        page = found[offset : offset + limit]
        last = offset + len(page) >= len(found)
        root = _sub(
            r.ok(),
            _m("RootFolder"),
            IndexedPagingOffset=str(offset + len(page)),
            TotalItemsInView=str(len(found)),
            IncludesLastItemInRange="true" if last else "false",
        )
        folders = _sub(root, _t("Folders"))
        for f in page:
            render_folder(folders, s.box, f)
    return r.root


def op_create_folder(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """CreateFolder under the given parent; duplicate names fail like Exchange."""
    r = Responder("CreateFolder")
    parent = _folder_ref(s.box, _folder_refs(s.box, req.find(_m("ParentFolderId")))[0])
    for spec in req.find(_m("Folders")) or []:
        name = spec.findtext(_t("DisplayName"), "")
        if any(
            f.parent_id == parent.folder_id and f.name.lower() == name.lower() for f in s.box.folders.values()
        ):
            r.error(EwsFault("ErrorFolderExists", "A folder with the specified name already exists."))
            continue
        f = s.box.add_folder(name, parent.folder_id)
        el = _sub(_sub(r.ok(), _m("Folders")), _t("Folder"))
        _sub(el, _t("FolderId"), Id=f.folder_id, ChangeKey=f.change_key)
    return r.root


def op_sync_folder_items(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """SyncFolderItems: changes since the opaque state, at most MaxChangesReturned per call."""
    r = Responder("SyncFolderItems")
    folder = _folder_ref(s.box, _folder_refs(s.box, req.find(_m("SyncFolderId")))[0])
    state = (req.findtext(_m("SyncState")) or "").strip()
    since = _decode_state(state, folder.folder_id) if state else 0
    limit = max(1, int(req.findtext(_m("MaxChangesReturned")) or "100"))
    id_only = _id_only(req.find(_m("ItemShape")))
    changes = s.box.changes_since(folder.folder_id, since)
    page = changes[:limit]
    last = len(page) == len(changes)
    new_seq = s.box.seq if last else page[-1][0]
    msg = r.ok()
    _sub(msg, _m("SyncState"), _encode_state(folder.folder_id, new_seq))
    _sub(msg, _m("IncludesLastItemInRange"), "true" if last else "false")
    out = _sub(msg, _m("Changes"))
    for _seq, kind, obj in page:
        el = _sub(out, _t(kind))
        if kind == "Delete":
            _sub(el, _t("ItemId"), Id=obj, ChangeKey="AAAAAA==")
        else:
            render_item(el, obj, id_only=id_only)
    return r.root


def op_find_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """FindItem: items of each folder, newest first, filtered by a simple restriction, with indexed paging."""
    r = Responder("FindItem")
    restriction = req.find(_m("Restriction"))
    id_only = _id_only(req.find(_m("ItemShape")))
    for ref in _folder_refs(s.box, req.find(_m("ParentFolderIds"))):
        folder = _folder_ref(s.box, ref)
        items = sorted(s.box.folder_items[folder.folder_id].values(), key=lambda i: i.received, reverse=True)
        if restriction is not None and len(restriction):
            items = [i for i in items if _restriction_matches(restriction[0], i)]
        offset, limit = _page(req.find(_m("IndexedPageItemView")), len(items))
        page = items[offset : offset + limit]
        root = _sub(
            r.ok(),
            _m("RootFolder"),
            IndexedPagingOffset=str(offset + len(page)),
            TotalItemsInView=str(len(items)),
            IncludesLastItemInRange="true" if offset + len(page) >= len(items) else "false",
        )
        out = _sub(root, _t("Items"))
        for item in page:
            render_item(out, item, id_only=id_only)
    return r.root


def op_get_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """GetItem: full messages, one response message per id (ErrorItemNotFound for unknown ids)."""
    r = Responder("GetItem")
    for item_id in _item_ids(req.find(_m("ItemIds"))):
        try:
            item = s.box.get(item_id)
        except EwsFault as e:
            r.error(e)
            continue
        render_item(_sub(r.ok(), _m("Items")), item)
    return r.root


def _apply_update(s: EwsStandIn, item: Item, update: ET.Element) -> None:
    """Apply one SetItemField/DeleteItemField; unknown fields are ignored (the stand-in keeps few)."""
    uri_el = update.find(_t("FieldURI"))
    uri = uri_el.get("FieldURI", "") if uri_el is not None else ""
    setting = update.tag == _t("SetItemField")
    holder = update.find(_t("Message")) if setting else None
    if uri == "item:Categories":
        cats = holder.find(_t("Categories")) if holder is not None else None
        item.categories = [c.text or "" for c in cats] if cats is not None else []
    elif uri == "message:IsRead" and holder is not None:
        item.is_read = _bool(holder.findtext(_t("IsRead")))
    elif uri == "item:Subject":
        item.subject = holder.findtext(_t("Subject"), "") if holder is not None else ""
    elif uri == "item:Body" and holder is not None:
        body = holder.find(_t("Body"))
        if body is not None and body.get("BodyType") == "HTML":
            item.body_html = body.text or ""
        elif body is not None:
            item.body_text, item.body_html = body.text or "", None


def op_update_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """UpdateItem: categories, read flag, subject and body; returns the new change key."""
    r = Responder("UpdateItem")
    for change in req.find(_m("ItemChanges")) or []:
        try:
            item = s.box.get(change.find(_t("ItemId")).get("Id", ""))  # type: ignore[union-attr]
        except EwsFault as e:
            r.error(e)
            continue
        for update in change.find(_t("Updates")) or []:
            _apply_update(s, item, update)
        s.box.touch(item)
        msg = r.ok()
        _sub(
            _sub(_sub(msg, _m("Items")), _t("Message")),
            _t("ItemId"),
            Id=item.item_id,
            ChangeKey=item.change_key,
        )
        _sub(msg, _m("ConflictResults")).append(_count_el(0))
    return r.root


def _count_el(n: int) -> ET.Element:
    el = ET.Element(_t("Count"))
    el.text = str(n)
    return el


def op_move_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """MoveItem: returns each moved item's new id."""
    r = Responder("MoveItem")
    target = _folder_ref(s.box, _folder_refs(s.box, req.find(_m("ToFolderId")))[0])
    for item_id in _item_ids(req.find(_m("ItemIds"))):
        try:
            item = s.box.move(item_id, target.folder_id)
        except EwsFault as e:
            r.error(e)
            continue
        render_item(_sub(r.ok(), _m("Items")), item, id_only=True)
    return r.root


def _item_from_spec(s: EwsStandIn, spec: ET.Element, folder_id: str) -> Item:
    """A new Item from a ``t:Message`` or ``t:ReplyToItem`` in a CreateItem request."""
    body = spec.find(_t("Body"))
    if spec.tag in (_t("ReplyToItem"), _t("ReplyAllToItem")):
        body = spec.find(_t("NewBodyContent"))
    is_html = body is not None and body.get("BodyType") == "HTML"
    text = body.text or "" if body is not None else ""
    item = Item(
        item_id=_new_id("AAMkI"),
        folder_id=folder_id,
        subject=spec.findtext(_t("Subject"), ""),
        sender_email=s.box.address,
        sender_name=s.box.address,
        to=_addresses(spec.find(_t("ToRecipients"))),
        cc=_addresses(spec.find(_t("CcRecipients"))),
        body_text=text,
        body_html=text if is_html else None,
        received=datetime.now(UTC),
        internet_message_id=f"<{uuid.uuid4().hex}@standin.local>",
        in_reply_to=spec.findtext(_t("InReplyTo")),
        conversation_id=_new_id("AAQkC"),
        categories=[c.text or "" for c in spec.find(_t("Categories")) or []],
        is_read=True,
        is_draft=True,
    )
    ref_ids = _item_ids(spec)
    if ref_ids:
        _thread_reply(s, item, s.box.get(ref_ids[0]))
    return item


def _thread_reply(s: EwsStandIn, reply: Item, original: Item) -> None:
    """Thread a reply like Exchange does for ReplyToItem: InReplyTo, conversation, default recipient."""
    reply.in_reply_to = original.internet_message_id
    reply.conversation_id = original.conversation_id
    if not reply.subject:
        reply.subject = f"RE: {original.subject}"
    if not reply.to:
        reply.to = [original.sender_email]


def op_create_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """CreateItem: SaveOnly keeps the item (Drafts by default); SendOnly/SendAndSaveCopy send it."""
    r = Responder("CreateItem")
    disposition = req.get("MessageDisposition", "SaveOnly")
    refs = _folder_refs(s.box, req.find(_m("SavedItemFolderId")))
    default = "drafts" if disposition == "SaveOnly" else "sentitems"
    folder = _folder_ref(s.box, refs[0]) if refs else s.box.folders[s.box.by_distinguished[default]]
    for spec in req.find(_m("Items")) or []:
        try:
            item = _item_from_spec(s, spec, folder.folder_id)
        except EwsFault as e:
            r.error(e)
            continue
        msg = r.ok()
        items_el = _sub(msg, _m("Items"))
        if disposition == "SaveOnly":
            s.box.insert(item)
            render_item(items_el, item, id_only=True)
            continue
        s.deliver(item, save_copy_to=folder.folder_id if disposition == "SendAndSaveCopy" else None)
    return r.root


def op_send_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """SendItem: sends a saved draft and moves it to Sent Items (or the given folder)."""
    r = Responder("SendItem")
    save = _bool(req.get("SaveItemToFolder", "true"))
    refs = _folder_refs(s.box, req.find(_m("SavedItemFolderId")))
    target = _folder_ref(s.box, refs[0]) if refs else s.box.folders[s.box.by_distinguished["sentitems"]]
    for item_id in _item_ids(req.find(_m("ItemIds"))):
        try:
            item = s.box.remove(item_id)
        except EwsFault as e:
            r.error(e)
            continue
        item.item_id = _new_id("AAMkI")
        s.deliver(item, save_copy_to=target.folder_id if save else None)
        r.ok()
    return r.root


def op_delete_item(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """DeleteItem: HardDelete removes; other types move to Deleted Items."""
    r = Responder("DeleteItem")
    hard = req.get("DeleteType", "MoveToDeletedItems") == "HardDelete"
    for item_id in _item_ids(req.find(_m("ItemIds"))):
        try:
            if hard:
                s.box.remove(item_id)
            else:
                s.box.move(item_id, s.box.by_distinguished["deleteditems"])
        except EwsFault as e:
            r.error(e)
            continue
        r.ok()
    return r.root


def op_resolve_names(s: EwsStandIn, req: ET.Element) -> ET.Element:
    """ResolveNames: the stand-in has no directory, so nothing resolves."""
    r = Responder("ResolveNames")
    r.error(EwsFault("ErrorNameResolutionNoResults", "No results were found."))
    return r.root


OPERATIONS = {
    "GetFolder": op_get_folder,
    "FindFolder": op_find_folder,
    "CreateFolder": op_create_folder,
    "SyncFolderItems": op_sync_folder_items,
    "FindItem": op_find_item,
    "GetItem": op_get_item,
    "UpdateItem": op_update_item,
    "MoveItem": op_move_item,
    "CreateItem": op_create_item,
    "SendItem": op_send_item,
    "DeleteItem": op_delete_item,
    "ResolveNames": op_resolve_names,
}


# ---------------------------------------------------------------------------------------------------------
# HTTP


class EwsHandler(QuietHandler):
    """Serves SOAP POSTs to any path (Exchange uses /EWS/Exchange.asmx)."""

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        """Authenticate, apply injected failures, then dispatch on the SOAP body's first element."""
        standin: EwsStandIn = self.server.standin  # type: ignore[attr-defined]
        body = self.read_body()
        op, root = _parse_operation(body)
        standin.record(
            RecordedRequest(
                "POST", self.path, dict(self.headers.items()), body, extra={"operation": op or ""}
            )
        )
        if not standin.check_auth(self.headers.get("Authorization")):
            self._unauthorized()
            return
        failure = standin.take_failure(op or "")
        if failure:
            self._fail(failure, standin)
            return
        status, payload = standin.dispatch(op, root)
        self.send_bytes(status, payload, "text/xml; charset=utf-8")

    def _unauthorized(self) -> None:
        self.send_bytes(401, b"401 Unauthorized", "text/plain", {"WWW-Authenticate": 'Basic realm="standin"'})

    def _fail(self, kind: tuple[str, int], standin: EwsStandIn) -> None:
        name, back_off_ms = kind
        if name == "auth":
            self._unauthorized()
        elif name == "http_500":
            self.send_bytes(500, b"Internal Server Error", "text/plain")
        else:
            self.send_bytes(
                500, envelope(None, standin.api_version, server_busy_fault(back_off_ms)), "text/xml"
            )


def _parse_operation(body: bytes) -> tuple[str | None, ET.Element | None]:
    """(operation name, operation element) from a SOAP request, or (None, None) when unparseable."""
    try:
        env = ET.fromstring(body)
    except ET.ParseError:
        return None, None
    soap_body = env.find(f"{{{SOAP_NS}}}Body")
    if soap_body is None or len(soap_body) == 0:
        return None, None
    el = soap_body[0]
    return el.tag.split("}")[-1], el


def _requested_version(body: bytes) -> str | None:
    """The RequestServerVersion the client asked for, echoed back like Exchange does."""
    try:
        env = ET.fromstring(body)
    except ET.ParseError:
        return None
    rsv = env.find(f"{{{SOAP_NS}}}Header/{_t('RequestServerVersion')}")
    return rsv.get("Version") if rsv is not None else None


class EwsStandIn(StandInServer):
    """A local EWS server with one seeded, in-memory mailbox.

    ``EwsStandIn(username="owner@example.com", password="secret")``; the EWS endpoint is ``ews_url``.
    """

    handler_class = EwsHandler
    api_version = "Exchange2016"

    def __init__(
        self,
        address: str = "owner@example.com",
        username: str | None = None,
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.address = address
        self.username = username if username is not None else address
        self.password = password if password is not None else "secret"
        self.box = Mailbox(address)
        self.outbox: list[Item] = []  # everything "sent", as the outside world would see it
        self._failures: dict[str, list[tuple[str, int]]] = {}

    @property
    def ews_url(self) -> str:
        """The EWS endpoint URL, e.g. ``http://127.0.0.1:54321/EWS/Exchange.asmx``."""
        return f"{self.url}/EWS/Exchange.asmx"

    # --- protocol plumbing -------------------------------------------------------------------------------

    def check_auth(self, header: str | None) -> bool:
        """Whether a Basic Authorization header carries the configured credentials."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == self.username and pw == self.password

    def fail_next(self, operation: str, kind: str, back_off_ms: int = DEFAULT_BACK_OFF_MS) -> None:
        """Make the next request for ``operation`` ("*" for any) fail with ``kind``."""
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; expected one of {FAILURE_KINDS}")
        with self.lock:
            self._failures.setdefault(operation, []).append((kind, back_off_ms))

    def take_failure(self, operation: str) -> tuple[str, int] | None:
        """Pop the injected failure for ``operation`` (or "*"), if any."""
        with self.lock:
            for key in (operation, "*"):
                queue = self._failures.get(key)
                if queue:
                    return queue.pop(0)
        return None

    def dispatch(self, op: str | None, root: ET.Element | None) -> tuple[int, bytes]:
        """Run one operation under the mailbox lock; returns (HTTP status, SOAP bytes)."""
        handler = OPERATIONS.get(op or "")
        if handler is None or root is None:
            fault = ET.Element(f"{{{SOAP_NS}}}Fault")
            _sub(fault, "faultcode", "a:ErrorInvalidRequest")
            _sub(fault, "faultstring", f"The stand-in does not implement {op!r}")
            return 500, envelope(None, self.api_version, fault)
        with self.box.lock:
            try:
                response = handler(self, root)
            except EwsFault as e:
                # An operation-wide problem (bad folder, bad sync state): one Error response message.
                failed = Responder(op or "")
                failed.error(e)
                response = failed.root
        return 200, envelope(response, self.api_version)

    def deliver(self, item: Item, save_copy_to: str | None) -> None:
        """Send ``item``: record it in ``outbox`` and keep a copy in ``save_copy_to`` if given."""
        item.is_draft = False
        item.received = datetime.now(UTC)
        self.outbox.append(item)
        if save_copy_to:
            item.folder_id = save_copy_to
            self.box.insert(item)

    # --- mailbox API for tests and the demo -------------------------------------------------------------

    def add_message(
        self,
        folder: str = "inbox",
        subject: str = "Hello",
        sender: str = "alice@example.com",
        body_text: str = "",
        body_html: str | None = None,
        received: datetime | None = None,
        internet_message_id: str | None = None,
        categories: tuple[str, ...] | list[str] = (),
        to: tuple[str, ...] | list[str] | None = None,
        cc: tuple[str, ...] | list[str] = (),
        attachments: tuple[str, ...] | list[str] = (),
        sender_name: str | None = None,
        in_reply_to: str | None = None,
        is_read: bool = False,
    ) -> str:
        """Deliver a message into ``folder``; returns its item id."""
        with self.box.lock:
            item = Item(
                item_id=_new_id("AAMkI"),
                folder_id=self.box.resolve(folder).folder_id,
                subject=subject,
                sender_email=sender,
                sender_name=sender_name or sender.split("@")[0].title(),
                to=list(to) if to is not None else [self.address],
                cc=list(cc),
                body_text=body_text,
                body_html=body_html,
                received=(received or datetime.now(UTC)).astimezone(UTC),
                internet_message_id=internet_message_id or f"<{uuid.uuid4().hex}@mail.example.com>",
                in_reply_to=in_reply_to,
                conversation_id=_new_id("AAQkC"),
                categories=list(categories),
                is_read=is_read,
                attachments=list(attachments),
            )
            return self.box.insert(item).item_id

    def messages(self, folder: str = "inbox") -> list[Item]:
        """Items in ``folder`` (logical name, display name or id), oldest first."""
        with self.box.lock:
            items = self.box.folder_items[self.box.resolve(folder).folder_id].values()
            return sorted(items, key=lambda i: (i.received, i.created_seq))

    def message(self, item_id: str) -> Item:
        """One item by id (KeyError if absent)."""
        with self.box.lock:
            return self.box.items[item_id]

    def move(self, item_id: str, folder: str) -> str:
        """Move an item as the owner would in Outlook (creating a missing folder under the Inbox); new id."""
        with self.box.lock:
            try:
                target = self.box.resolve(folder)
            except KeyError:
                target = self.box.add_folder(folder, self.box.by_distinguished["inbox"])
            return self.box.move(item_id, target.folder_id).item_id

    def set_categories(self, item_id: str, categories: list[str] | tuple[str, ...]) -> None:
        """Set an item's categories as the owner would."""
        with self.box.lock:
            item = self.box.items[item_id]
            item.categories = list(categories)
            self.box.touch(item)

    def mark_read(self, item_id: str, is_read: bool = True) -> None:
        """Set an item's read flag as the owner would."""
        with self.box.lock:
            item = self.box.items[item_id]
            item.is_read = is_read
            self.box.touch(item)

    def edit(self, item_id: str, body_text: str) -> None:
        """Change an item's plain-text body (e.g. the owner editing a draft)."""
        with self.box.lock:
            item = self.box.items[item_id]
            item.body_text = body_text
            self.box.touch(item)

    def delete(self, item_id: str) -> None:
        """Hard-delete an item as the owner would."""
        with self.box.lock:
            self.box.remove(item_id)

    def folders(self) -> dict[str, str]:
        """Display name -> folder id, for every folder."""
        with self.box.lock:
            return {f.name: f.folder_id for f in self.box.folders.values()}

    def folder_parent(self, name: str) -> str | None:
        """Display name of a folder's parent."""
        with self.box.lock:
            parent = self.box.resolve(name).parent_id
            return self.box.folders[parent].name if parent else None

    def sent_items(self) -> list[Item]:
        """Items in Sent Items."""
        return self.messages("sentitems")

    def drafts(self) -> list[Item]:
        """Items in Drafts."""
        return self.messages("drafts")

    def operations(self) -> list[str]:
        """The SOAP operation of every recorded request, in order."""
        with self.lock:
            return [r.extra.get("operation", "") for r in self.requests]

    def seed_demo(self) -> None:
        """A small, believable inbox for ``clawback demo``."""
        now = datetime.now(UTC)
        demo = [
            ("Quarterly numbers", "carol@example.com", "Can you send me the Q3 revenue sheet by Friday?"),
            ("Lunch?", "dave@example.com", "Are you free for lunch tomorrow?"),
            ("Invoice 4411 overdue", "billing@vendor.example", "Your invoice 4411 is 14 days overdue."),
            ("Deploy window", "erin@example.com", "Can we move Thursday's deploy to 10:00?"),
        ]
        for n, (subject, sender, text) in enumerate(demo):
            self.add_message(
                subject=subject, sender=sender, body_text=text, received=now - timedelta(hours=n)
            )


def main(argv: list[str] | None = None) -> None:
    """``python -m bot.standins.ews --port 8025 --seed demo``: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--address", default="owner@example.com")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--seed", choices=["demo", "none"], default="demo")
    args = parser.parse_args(argv)
    standin = EwsStandIn(address=args.address, password=args.password, port=args.port).start()
    if args.seed == "demo":
        standin.seed_demo()
    print(f"EWS stand-in for {args.address} at {standin.ews_url} (password {args.password!r})", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
