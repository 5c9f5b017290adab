"""The simulated national document axis, answering as the official SDK expects.

Calls (POST `<endpoint>/<call>`, and GET for the two counts): sendEdoc (raw .edxml body,
`application/octet-stream`), getReceivedEdocList and getSentEdocList (one `messagetype` per
call), getEdoc, updateStatus, countReceiveEdoc, countReceiveStatus. Every answer carries
`status`, `ErrorCode` (`"0"` = success) and `ErrorDesc`; refusals answer `FAIL` with a
non-zero code. Authentication is read by axis_wire.py, from the documented wire format.

A document goes to the organisations in its To list, a status packet to the organisation its
ResponseFor names. A re-sent file (same system, same SHA-256) is the DocId it already has,
and DocIds are derived from those two, so a given upload always gets the same DocId.
Everything lives in the simulator's SQLite file.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from adapter.edxml.model import EDXML_NS
from adapter.errors import UnsafeXmlError
from adapter.sim.agencies import AgencyDesk
from adapter.sim.axis_wire import (
    VN_TZ,
    Signed,
    WireRefusal,
    authenticate,
    hash_file_forms,
)
from adapter.xml.safe import parse_untrusted

E = f"{{{EDXML_NS}}}"
DOC_ID_NAMESPACE = uuid.UUID("6f1c2a52-8d0e-4c55-9b1e-3a7d2f4e8c10")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS axis_edoc (
  doc_id TEXT PRIMARY KEY, sender_system TEXT NOT NULL, from_org TEXT NOT NULL,
  message_type TEXT NOT NULL, sha256 TEXT NOT NULL, payload BLOB NOT NULL,
  title TEXT NOT NULL, notation TEXT NOT NULL,
  created TEXT NOT NULL, sends INTEGER NOT NULL DEFAULT 1,
  UNIQUE (sender_system, sha256)
);
CREATE TABLE IF NOT EXISTS axis_edoc_delivery (
  doc_id TEXT NOT NULL, to_org TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'initial',
  updated TEXT NOT NULL,
  PRIMARY KEY (doc_id, to_org)
);
"""
_STATUS_DESC = {"initial": "Chưa nhận", "done": "Đã nhận", "fail": "Nhận lỗi"}


def doc_id_for(system_id: str, sha256: str) -> str:
    """The DocId of an upload: stable for the same system and the same file."""
    return str(uuid.uuid5(DOC_ID_NAMESPACE, f"{system_id}:{sha256}"))


def _now() -> str:
    return dt.datetime.now(VN_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _bad(desc: str) -> WireRefusal:
    return WireRefusal("400", desc)


class AxisDesk:
    def __init__(self, db: Path, clients: dict[str, tuple[str, bytes]],
                 replay_window: float | None = None,
                 agencies: AgencyDesk | None = None) -> None:
        """`clients`: system id -> (organisation id, shared secret). `replay_window`:
        refuse timestamps further than this from the clock; None (the default) accepts
        the SDK's habit of reusing one timestamp for the life of a client. `agencies`:
        recipients the simulator answers for (agencies.py)."""
        self.db, self.clients, self.replay_window = db, clients, replay_window
        self.agencies = agencies
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = sqlite3.connect(self.db, timeout=60, isolation_level=None)
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA busy_timeout=60000")
            self._local.conn = c
        return c

    def __call__(self, path: str, environ: dict, body: bytes,
                 start_response: Callable) -> Iterable[bytes]:
        call = path.strip("/")
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        handler = self._handlers().get(call)
        try:
            if handler is None:
                raise WireRefusal("404", f"no such call {call!r}", 404)
            method = environ.get("REQUEST_METHOD", "POST")
            if method != "POST" and not call.startswith("count"):
                raise WireRefusal("405", f"{call} takes POST, not {method}", 405)
            signed = authenticate(headers, call, self._secret_of,
                                  replay_window=self.replay_window)
            org = self.clients[signed.system_id][0]
            answer = handler(signed, org, body, headers)
        except WireRefusal as exc:
            return self._json(start_response, {"status": "FAIL", "ErrorCode": exc.code,
                                               "ErrorDesc": exc.desc}, exc.http)
        return self._json(start_response, {"status": "OK", "ErrorCode": "0", "ErrorDesc": "",
                                           **answer})

    def report(self) -> dict:
        """What the axis carried: documents and status packets, deliveries by state."""
        c = self._conn()
        sent = dict(c.execute("SELECT message_type, count(*) FROM axis_edoc "
                              "GROUP BY message_type").fetchall())
        deliveries = dict(c.execute(
            "SELECT x.status, count(*) FROM axis_edoc_delivery x JOIN axis_edoc d "
            "ON d.doc_id = x.doc_id WHERE d.message_type='edoc' GROUP BY x.status").fetchall())
        return {"documents": sent.get("edoc", 0), "statuses": sent.get("status", 0),
                "deliveries": deliveries}

    def _secret_of(self, system_id: str) -> bytes | None:
        client = self.clients.get(system_id)
        return client[1] if client else None

    def _handlers(self) -> dict[str, Callable]:
        return {"sendEdoc": self._send, "getReceivedEdocList": self._received,
                "getEdoc": self._get, "updateStatus": self._update,
                "getSentEdocList": self._sent, "countReceiveEdoc": self._count("edoc"),
                "countReceiveStatus": self._count("status")}

    @staticmethod
    def _json(start_response, data: dict, code: int = 200):
        body = json.dumps(data, ensure_ascii=False).encode()
        start_response(f"{code} {'OK' if code == 200 else 'Error'}",
                       [("Content-Type", "application/json; charset=utf-8"),
                        ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _message_type(s: Signed) -> str:
        mtype = s.get("messagetype")
        if mtype not in ("edoc", "status"):
            raise _bad(f"messagetype must be edoc or status, not {mtype!r}")
        return mtype

    # ---- calls -----------------------------------------------------------------------

    def _send(self, s: Signed, org: str, body: bytes, headers: dict) -> dict:
        if s.get("from") != org:
            raise WireRefusal("403", f"from {s.get('from')} is not the organisation of "
                                     f"system {s.system_id}")
        if s.get("servicetype") != "eDoc":
            raise _bad(f"servicetype must be eDoc, not {s.get('servicetype')!r}")
        mtype = self._message_type(s)
        data = self._upload(body, s.get("hash-file").strip().lower())
        root = self._packet(data)
        mh = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader")
        author = (mh.findtext(f"{E}From/{E}OrganId") or "").strip()
        if author != org:
            raise WireRefusal("403", f"the packet's From {author or '(none)'} is not the "
                                     f"organisation of system {s.system_id}")
        if mtype == "status":
            to = [mh.findtext(f"{E}ResponseFor/{E}OrganId") or ""]
        else:
            to = [t.findtext(f"{E}OrganId") or "" for t in mh.iterfind(f"{E}To")]
        to = sorted({t.strip() for t in to if t.strip()})
        if not to:
            raise _bad("the packet names no recipient")
        digest = hashlib.sha256(data).hexdigest()
        doc_id = doc_id_for(s.system_id, digest)
        title = (mh.findtext(E + "Subject") or mh.findtext(E + "Description") or "").strip()
        notation = "/".join(x.strip() for x in (mh.findtext(f"{E}Code/{E}CodeNumber") or "",
                                                 mh.findtext(f"{E}Code/{E}CodeNotation") or "")
                            if x.strip())
        # the played agencies answer before the transaction: signing holds no lock
        answers = self.agencies.answers(root, to) \
            if self.agencies is not None and mtype == "edoc" else []
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            n = c.execute("UPDATE axis_edoc SET sends = sends + 1 WHERE doc_id=?",
                          (doc_id,)).rowcount
            if not n:
                now = _now()
                c.execute("INSERT INTO axis_edoc VALUES (?,?,?,?,?,?,?,?,?,1)",
                          (doc_id, s.system_id, org, mtype, digest, data, title[:500],
                           notation[:200], now))
                c.executemany("INSERT OR IGNORE INTO axis_edoc_delivery (doc_id, to_org, updated)"
                              " VALUES (?,?,?)", [(doc_id, t, now) for t in to])
                self._deliver_answers(c, doc_id, org, answers, now)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"DocId": doc_id}

    @staticmethod
    def _deliver_answers(c: sqlite3.Connection, doc_id: str, sender: str, answers: list,
                         now: str) -> None:
        """A played agency took the document (`done`) and its status packets now wait for
        the sender, as if the agency's own system had sent them."""
        for a in answers:
            c.execute("UPDATE axis_edoc_delivery SET status='done', updated=? "
                      "WHERE doc_id=? AND to_org=?", (now, doc_id, a.agency))
            digest = hashlib.sha256(a.data).hexdigest()
            answer_id = doc_id_for(f"sim:{a.agency}", digest)
            c.execute("INSERT OR IGNORE INTO axis_edoc VALUES (?,?,?,?,?,?,?,?,?,1)",
                      (answer_id, f"sim:{a.agency}", a.agency, "status", digest, a.data,
                       f"Trạng thái {a.code}", "", now))
            c.execute("INSERT OR IGNORE INTO axis_edoc_delivery (doc_id, to_org, updated) "
                      "VALUES (?,?,?)", (answer_id, sender, now))

    @staticmethod
    def _upload(body: bytes, hash_file: str) -> bytes:
        """The raw .edxml; the SDK's upload helper appends a CRLF that hash-file excludes."""
        candidates = [body] + ([body[:-2]] if body.endswith(b"\r\n") else [])
        for data in reversed(candidates):
            if hash_file in hash_file_forms(data):
                return data
        if body.startswith(b"--"):
            raise _bad("the body looks like multipart/form-data: send the raw .edxml as "
                       "application/octet-stream")
        raise _bad("hash-file does not match the uploaded file")

    @staticmethod
    def _packet(data: bytes):
        try:
            root = parse_untrusted(data, name="sendEdoc body")
        except UnsafeXmlError as exc:
            raise _bad(str(exc)) from None
        if root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader") is None:
            raise _bad("the body is not an edXML packet (no edXMLHeader/MessageHeader)")
        return root

    def _received(self, s: Signed, org: str, body: bytes, headers: dict) -> dict:
        rows = self._conn().execute(
            "SELECT d.doc_id, d.from_org, d.message_type, x.status, d.created, x.updated "
            "FROM axis_edoc_delivery x JOIN axis_edoc d ON d.doc_id = x.doc_id "
            "WHERE x.to_org=? AND x.status='initial' AND d.message_type=? "
            "ORDER BY d.rowid LIMIT 500", (org, self._message_type(s))).fetchall()
        return {"data": [
            {"docId": r[0], "serviceType": "eDoc", "messageType": r[2], "created_time": r[4],
             "updated_time": r[5], "from": r[1], "to": org, "status": r[3],
             "status_desc": _STATUS_DESC[r[3]]} for r in rows]}

    def _get(self, s: Signed, org: str, body: bytes, headers: dict) -> dict:
        row = self._conn().execute(
            "SELECT d.payload FROM axis_edoc d JOIN axis_edoc_delivery x "
            "ON x.doc_id = d.doc_id WHERE d.doc_id=? AND x.to_org=?",
            (s.get("docid"), org)).fetchone()
        if row is None:
            raise WireRefusal("404", f"no document {s.get('docid')} for {org}")
        return {"data": base64.b64encode(row[0]).decode()}

    def _update(self, s: Signed, org: str, body: bytes, headers: dict) -> dict:
        if s.get("status") not in ("done", "fail"):
            raise _bad("status must be done or fail")
        n = self._conn().execute(
            "UPDATE axis_edoc_delivery SET status=?, updated=? WHERE doc_id=? AND to_org=?",
            (s.get("status"), _now(), s.get("docid"), org)).rowcount
        if not n:
            raise WireRefusal("404", f"no document {s.get('docid')} for {org}")
        return {}

    def _sent(self, s: Signed, org: str, body: bytes, headers: dict) -> dict:
        rows = self._conn().execute(
            "SELECT d.doc_id, d.from_org, x.to_org, x.status, d.title, d.notation, "
            "d.message_type, d.created, x.updated, d.sends FROM axis_edoc d "
            "JOIN axis_edoc_delivery x ON x.doc_id = d.doc_id "
            "WHERE d.sender_system=? AND d.message_type=? ORDER BY d.rowid, x.to_org",
            (s.system_id, self._message_type(s))).fetchall()
        return {"data": [
            {"serviceType": "eDoc", "senderDocId": r[0], "receiverDocId": r[0],
             "fromCode": r[1], "toCode": r[2], "sendStatus": "done",
             "sendStatusDesc": "Đã gửi", "receiveStatus": r[3],
             "receiveStatusDesc": _STATUS_DESC[r[3]], "title": r[4], "notation": r[5],
             "messageType": r[6], "sentTime": r[7],
             "receivedTime": r[8] if r[3] != "initial" else "", "sends": r[9]}
            for r in rows]}

    def _count(self, message_type: str) -> Callable:
        def count(s: Signed, org: str, body: bytes, headers: dict) -> dict:
            (n,) = self._conn().execute(
                "SELECT count(*) FROM axis_edoc_delivery x JOIN axis_edoc d "
                "ON d.doc_id = x.doc_id WHERE x.to_org=? AND x.status='initial' "
                "AND d.message_type=?", (org, message_type)).fetchone()
            return {"count": n}
        return count
