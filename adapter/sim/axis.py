"""The simulated national document axis: sendEdoc, getReceivedEdocList, getEdoc,
updateStatus, getSentEdocList, answering JSON, with strict HMAC and timestamp checks.

It routes a document to the organisations in its To list and a status packet to the
organisation its ResponseFor names, deduplicates a re-sent file (same sender, same SHA-256)
to the DocId it already has, and keeps everything in the simulator's SQLite file.
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
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

from adapter.edxml.model import EDXML_NS
from adapter.errors import UnsafeXmlError
from adapter.transports.axis_auth import AxisAuthError, check_headers
from adapter.xml.safe import parse_untrusted

E = f"{{{EDXML_NS}}}"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS axis_docs (
  doc_id TEXT PRIMARY KEY, sender_system TEXT NOT NULL, from_org TEXT NOT NULL,
  message_type TEXT NOT NULL, sha256 TEXT NOT NULL, payload BLOB NOT NULL,
  created TEXT NOT NULL, sends INTEGER NOT NULL DEFAULT 1,
  UNIQUE (sender_system, sha256)
);
CREATE TABLE IF NOT EXISTS axis_deliveries (
  doc_id TEXT NOT NULL, to_org TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'new',
  PRIMARY KEY (doc_id, to_org)
);
"""


class AxisDesk:
    def __init__(self, db: Path, clients: dict[str, tuple[str, bytes]],
                 max_skew: float = 300.0) -> None:
        """`clients`: system id -> (organisation id, shared secret)."""
        self.db, self.clients, self.max_skew = db, clients, max_skew
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
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items()
                   if k.startswith("HTTP_")}
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        try:
            values = check_headers(headers, path,
                                   lambda sid: self.clients.get(sid, (None, None))[1],
                                   max_skew=self.max_skew)
        except AxisAuthError as exc:
            return self._json(start_response, {"status": "FAIL", "ErrorDesc": str(exc)}, 401)
        if values["content-type"] != headers["content-type"]:
            return self._json(start_response, {"status": "FAIL", "ErrorDesc":
                                               "Content-Type differs from its signed value"}, 401)
        org = self.clients[values["systemid"]][0]
        handler = {"/sendEdoc": self._send, "/getReceivedEdocList": self._received,
                   "/getEdoc": self._get, "/updateStatus": self._update,
                   "/getSentEdocList": self._sent}.get(path)
        if handler is None:
            return self._json(start_response, {"status": "FAIL", "ErrorDesc": "no such call"},
                              404)
        try:
            return self._json(start_response, handler(values, org, body, headers))
        except _Refusal as exc:
            return self._json(start_response, {"status": "FAIL", "ErrorDesc": str(exc)}, 400)

    @staticmethod
    def _json(start_response, data: dict, code: int = 200):
        body = json.dumps(data, ensure_ascii=False).encode()
        start_response(f"{code} {'OK' if code == 200 else 'Error'}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body)))])
        return [body]

    # ---- calls -----------------------------------------------------------------------

    def _send(self, v: dict, org: str, body: bytes, headers: dict) -> dict:
        if v["from"] != org:
            raise _Refusal(f"from {v['from']} is not the organisation of {v['systemid']}")
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body)
        files = [p for p in msg.iter_parts() if p.get_param("name", header="content-disposition")
                 == "file_doc"] if msg.is_multipart() else []
        if not files:
            raise _Refusal("multipart form part file_doc is missing")
        data = files[0].get_payload(decode=True) or b""
        if hashlib.sha256(data).hexdigest() != v["hash-file"].lower():
            raise _Refusal("hash-file does not match the uploaded file")
        try:
            root = parse_untrusted(data, name="file_doc")
        except UnsafeXmlError as exc:
            raise _Refusal(str(exc)) from None
        if v["messagetype"] == "status":
            to = [root.findtext(f".//{E}MessageHeader/{E}ResponseFor/{E}OrganId") or ""]
        else:
            to = [t.findtext(f"{E}OrganId") or "" for t in
                  root.iterfind(f".//{E}MessageHeader/{E}To")]
        to = [t.strip() for t in to if t.strip()]
        if not to:
            raise _Refusal("the packet names no recipient")
        digest = hashlib.sha256(data).hexdigest()
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT doc_id FROM axis_docs WHERE sender_system=? AND sha256=?",
                            (v["systemid"], digest)).fetchone()
            if row:
                c.execute("UPDATE axis_docs SET sends = sends + 1 WHERE doc_id=?", (row[0],))
                doc_id = row[0]
            else:
                doc_id = str(uuid.uuid4())
                c.execute("INSERT INTO axis_docs VALUES (?,?,?,?,?,?,?,1)",
                          (doc_id, v["systemid"], org, v["messagetype"], digest, data,
                           dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))
                c.executemany("INSERT OR IGNORE INTO axis_deliveries (doc_id, to_org) "
                              "VALUES (?,?)", [(doc_id, t) for t in to])
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return {"status": "OK", "DocId": doc_id}

    def _received(self, v: dict, org: str, body: bytes, headers: dict) -> dict:
        rows = self._conn().execute(
            "SELECT d.doc_id, d.from_org, d.message_type, x.status, d.created "
            "FROM axis_deliveries x JOIN axis_docs d ON d.doc_id = x.doc_id "
            "WHERE x.to_org=? AND x.status='new' ORDER BY d.rowid LIMIT 500", (org,)).fetchall()
        return {"status": "OK", "data": [
            {"docId": r[0], "from": r[1], "to": org, "messageType": r[2], "status": r[3],
             "created": r[4]} for r in rows]}

    def _get(self, v: dict, org: str, body: bytes, headers: dict) -> dict:
        row = self._conn().execute(
            "SELECT d.payload FROM axis_docs d JOIN axis_deliveries x ON x.doc_id = d.doc_id "
            "WHERE d.doc_id=? AND x.to_org=?", (v["docid"], org)).fetchone()
        if row is None:
            raise _Refusal(f"no document {v['docid']} for {org}")
        return {"status": "OK", "data": base64.b64encode(row[0]).decode()}

    def _update(self, v: dict, org: str, body: bytes, headers: dict) -> dict:
        if v["status"] not in ("done", "fail"):
            raise _Refusal("status must be done or fail")
        n = self._conn().execute("UPDATE axis_deliveries SET status=? WHERE doc_id=? AND to_org=?",
                                 (v["status"], v["docid"], org)).rowcount
        if not n:
            raise _Refusal(f"no document {v['docid']} for {org}")
        return {"status": "OK"}

    def _sent(self, v: dict, org: str, body: bytes, headers: dict) -> dict:
        rows = self._conn().execute(
            "SELECT d.doc_id, d.message_type, x.to_org, x.status, d.sends FROM axis_docs d "
            "JOIN axis_deliveries x ON x.doc_id = d.doc_id WHERE d.sender_system=? "
            "ORDER BY d.rowid", (v["systemid"],)).fetchall()
        return {"status": "OK", "data": [
            {"docId": r[0], "messageType": r[1], "to": r[2], "status": r[3], "sends": r[4]}
            for r in rows]}


class _Refusal(Exception):
    pass
