"""Agencies the simulated axis plays: the courts and procuracies the demo's decisions go to.

A real recipient's document system takes the document off the axis, checks its signature
and answers with status packets: 01 when it arrives, then 03 when the clerk registers it,
or 02 when it is refused. Here that happens as the document is sent, so a demo round trip
needs no second system: each played agency verifies the document against the simulator's
trust anchors and answers, signed with the agency key (the dev PKI's court signer), to the
organisation that sent it. The answers wait on the axis like any status packet; the
adapter pulls, verifies and settles them per recipient as it would real ones.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from adapter.crypto.keys import SigningIdentity
from adapter.edxml import build_status, sign_edxml
from adapter.edxml.model import EDXML_NS, Organization, ResponseFor, StatusPacket
from adapter.edxml.signature import verify_edxml
from adapter.sim.axis_wire import VN_TZ
from adapter.xml.safe import serialize

E = f"{{{EDXML_NS}}}"
#: what each answer says (QCVN 102 status codes)
_SAYS = {"01": "Đã đến", "02": "Từ chối tiếp nhận", "03": "Đã tiếp nhận, vào sổ"}


@dataclass(frozen=True)
class Answer:
    """One status packet an agency sends back: who answers, and the signed bytes."""

    agency: str
    code: str
    data: bytes


class AgencyDesk:
    def __init__(self, identity: SigningIdentity, agencies: Iterable[str],
                 anchors: list[x509.Certificate]) -> None:
        self.identity, self.anchors = identity, anchors
        self.agencies = frozenset(agencies)

    def plays(self, org: str) -> bool:
        return org in self.agencies

    def answers(self, root: etree._Element, recipients: Iterable[str]) -> list[Answer]:
        """The status packets the played agencies among `recipients` send about document
        `root`: 01 then 03 when its signature verifies under the trust anchors, 01 then 02
        (naming the reason) when it does not."""
        played = sorted(r for r in recipients if r in self.agencies)
        if not played:
            return []
        mh = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{E}MessageHeader")
        assert mh is not None  # the axis refused packets without one before calling here
        sender = (mh.findtext(f"{E}From/{E}OrganId") or "").strip()
        code = "/".join(x.strip() for x in (mh.findtext(f"{E}Code/{E}CodeNumber") or "",
                                             mh.findtext(f"{E}Code/{E}CodeNotation") or "")
                        if x.strip())
        date = mh.findtext(f"{E}PromulgationInfo/{E}PromulgationDate") or ""
        about = ResponseFor(sender, code, date.strip(),
                            (mh.findtext(E + "DocumentId") or "").strip())
        outcome = verify_edxml(root, self.anchors).outcome
        verdict = "03" if outcome.outcome == "valid" else "02"
        why = "" if verdict == "03" else f": chữ ký {outcome.outcome} ({outcome.detail})"
        return [Answer(agency, c, self._status(agency, about, c, why if c == "02" else ""))
                for agency in played for c in ("01", verdict)]

    def _status(self, agency: str, about: ResponseFor, code: str, why: str) -> bytes:
        now = dt.datetime.now(VN_TZ).strftime("%Y/%m/%d %H:%M:%S")
        st = StatusPacket(Organization(agency, f"Cơ quan {agency} (mô phỏng)", "",
                                       f"Địa chỉ {agency}"),
                          about, code, _SAYS[code] + why, now,
                          {"Department": "Văn thư", "Staff": "Văn thư mô phỏng"})
        return serialize(sign_edxml(build_status(st), self.identity))


__all__ = ["AgencyDesk", "Answer"]
