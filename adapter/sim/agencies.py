"""Agencies the simulated axis plays: the courts and procuracies the demo's decisions go to.

A real recipient's document system takes the document off the axis, checks its signature
and answers with status packets: 01 when it arrives, then 03 when the clerk registers it,
or 02 when it is refused. Here that happens as the document is sent, so a demo round trip
needs no second system: each played agency verifies the document against the simulator's
trust anchors and answers the organisation that sent it, signed with the agency key (the
dev PKI's court signer). The answers wait on the axis like any status packet; the adapter
pulls, verifies and settles them per recipient as it would real ones.

Written from the counterpart's facts (EDXML.md: the status packet's layout and order,
the enveloped signature in edXMLHeader), not with the adapter's edXML builder or verifier:
signxml signs and verifies here directly, so the demo does not only show the adapter
agreeing with itself.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature as WrongIssuer
from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    SignatureConfiguration,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidInput, InvalidSignature

from adapter.crypto.keys import SigningIdentity
from adapter.sim.axis_wire import VN_TZ

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DS = "http://www.w3.org/2000/09/xmldsig#"
E = f"{{{NS}}}"
#: what each answer says (QCVN 102 status codes)
_SAYS = {"01": "Đã đến", "02": "Từ chối tiếp nhận", "03": "Đã tiếp nhận, vào sổ"}
_EXC_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0


@dataclass(frozen=True)
class Answer:
    """One status packet an agency sends back: who answers, and the signed bytes."""

    agency: str
    code: str
    data: bytes


class AgencyDesk:
    def __init__(self, identity: SigningIdentity, agencies: Iterable[str],
                 anchors: list[x509.Certificate]) -> None:
        self.anchors = anchors
        self.agencies = frozenset(agencies)
        self._key = identity.key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
        self._cert = identity.cert.public_bytes(serialization.Encoding.PEM).decode()

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
        about = {
            "OrganId": (mh.findtext(f"{E}From/{E}OrganId") or "").strip(),
            "Code": "/".join(x.strip() for x in (
                mh.findtext(f"{E}Code/{E}CodeNumber") or "",
                mh.findtext(f"{E}Code/{E}CodeNotation") or "") if x.strip()),
            "PromulgationDate": (mh.findtext(f"{E}PromulgationInfo/{E}PromulgationDate")
                                 or "").strip(),
            "DocumentId": (mh.findtext(E + "DocumentId") or "").strip(),
        }
        refusal = self._refusal(root)
        verdict = "02" if refusal else "03"
        return [Answer(agency, code, self._status(agency, about, code,
                                                  refusal if code == "02" else ""))
                for agency in played for code in ("01", verdict)]

    def _refusal(self, root: etree._Element) -> str:
        """Why the document's signature fails ("" when it holds): an enveloped XML-DSig
        in edXMLHeader by a certificate one of the anchors issued, valid today."""
        found = root.findall(f"{E}edXMLEnvelope/{E}edXMLHeader/{{{DS}}}Signature")
        if len(found) != 1:
            return "không có đúng một chữ ký" if found else "văn bản không có chữ ký"
        der = found[0].findtext(f".//{{{DS}}}X509Certificate")
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(der or ""))
        except ValueError:
            return "chứng thư số trong chữ ký không đọc được"
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return "chứng thư số hết hiệu lực"
        if not any(self._issued(cert, a) for a in self.anchors):
            return "chứng thư số không do cơ quan chứng thực tin cậy cấp"
        try:
            XMLVerifier().verify(root, x509_cert=cert, expect_config=SignatureConfiguration(
                location=f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/"))
        except (InvalidSignature, InvalidInput) as exc:
            return f"chữ ký không hợp lệ ({exc})"
        return ""

    @staticmethod
    def _issued(cert: x509.Certificate, anchor: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(anchor)
            return True
        except (ValueError, TypeError, WrongIssuer):  # another issuer, key type or signature
            return False

    def _status(self, agency: str, about: dict[str, str], code: str, why: str) -> bytes:
        """A status packet as EDXML.md lays it out: From, ResponseFor, StaffInfo,
        StatusCode, Description, Timestamp; signed (enveloped) inside edXMLHeader."""
        root = etree.Element(E + "edXML", nsmap={None: NS})
        env = etree.SubElement(root, E + "edXMLEnvelope", nsmap={"edXML": NS})
        header = etree.SubElement(env, E + "edXMLHeader")
        mh = etree.SubElement(header, E + "MessageHeader")
        sender = etree.SubElement(mh, E + "From")
        for tag, text in (("OrganId", agency), ("OrganizationInCharge", ""),
                          ("OrganName", f"Cơ quan {agency} (mô phỏng)"),
                          ("OrganAdd", f"Địa chỉ {agency}"), ("Email", ""),
                          ("Telephone", ""), ("Fax", ""), ("Website", "")):
            etree.SubElement(sender, E + tag).text = text
        response_for = etree.SubElement(mh, E + "ResponseFor")
        for tag in ("OrganId", "Code", "PromulgationDate", "DocumentId"):
            etree.SubElement(response_for, E + tag).text = about[tag]
        staff = etree.SubElement(mh, E + "StaffInfo")
        etree.SubElement(staff, E + "Department").text = "Văn thư"
        etree.SubElement(staff, E + "Staff").text = "Văn thư mô phỏng"
        etree.SubElement(mh, E + "StatusCode").text = code
        etree.SubElement(mh, E + "Description").text = _SAYS[code] + (f": {why}" if why else "")
        etree.SubElement(mh, E + "Timestamp").text = \
            dt.datetime.now(VN_TZ).strftime("%Y/%m/%d %H:%M:%S")
        etree.SubElement(header, f"{{{DS}}}Signature", Id="placeholder", nsmap={"ds": DS})
        signed = XMLSigner(c14n_algorithm=_EXC_C14N).sign(
            root, key=self._key, cert=self._cert, always_add_key_value=False)
        placed = signed.find(f"{E}edXMLEnvelope/{E}edXMLHeader/{{{DS}}}Signature")
        assert placed is not None and placed.get("Id") is None, "signature not in place"
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")


__all__ = ["AgencyDesk", "Answer"]
