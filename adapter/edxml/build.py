"""Write edXML packets (documents and status packets) and sign them.

Output is strict: organisation ids must match NNN.NN.NN.XNN, dates are yyyy/MM/dd,
children follow the standard's order, and attachments are base64 with their type taken
from their bytes. The signature is the enveloped XML-DSig over the whole packet
(`URI=""`) in edXMLHeader, as the axis's clients expect: RSA-SHA256 with exclusive c14n by
default; RSA-SHA1 with inclusive c14n only under the legacy profile, for peers configured
for it.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from adapter.crypto.constants import (
    C14N,
    DIGESTS,
    DSIG_NS,
    EDXML_PROFILES,
    ENVELOPED,
    SIGNATURES,
)
from adapter.crypto.keys import SigningIdentity
from adapter.edxml.model import (
    EDXML_NS,
    EdocDocument,
    Organization,
    ResponseFor,
    StatusPacket,
)
from adapter.edxml.parse import STRICT_ORGAN_ID, detect_type
from adapter.errors import PacketError

E = f"{{{EDXML_NS}}}"
DS = f"{{{DSIG_NS}}}"
def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    el = etree.SubElement(parent, E + tag)
    if text is not None:
        el.text = text
    return el


def _strict(organ_id: str) -> str:
    if not STRICT_ORGAN_ID.fullmatch(organ_id):
        raise PacketError(f"organisation id {organ_id!r} is not of the form NNN.NN.NN.XNN "
                          "(the adapter never sends a malformed one)")
    return organ_id


def _organization(parent: etree._Element, tag: str, org: Organization) -> None:
    el = _sub(parent, tag)
    _sub(el, "OrganId", _strict(org.organ_id))
    for t, v in (("OrganizationInCharge", org.in_charge), ("OrganName", org.name),
                 ("OrganAdd", org.address), ("Email", org.email),
                 ("Telephone", org.telephone), ("Fax", org.fax), ("Website", org.website)):
        _sub(el, t, v)


def _response_for(parent: etree._Element, rf: ResponseFor) -> None:
    el = _sub(parent, "ResponseFor")
    _sub(el, "OrganId", _strict(rf.organ_id))
    _sub(el, "Code", rf.code)
    _sub(el, "PromulgationDate", rf.promulgation_date)
    _sub(el, "DocumentId", rf.document_id)


def _skeleton() -> tuple[etree._Element, etree._Element, etree._Element]:
    root = etree.Element(E + "edXML", nsmap={None: EDXML_NS})
    env = etree.SubElement(root, E + "edXMLEnvelope", nsmap={"edXML": EDXML_NS})
    header = _sub(env, "edXMLHeader")
    return root, env, _sub(header, "MessageHeader")


def build_document(doc: EdocDocument) -> etree._Element:
    root, env, mh = _skeleton()
    _organization(mh, "From", doc.sender)
    for to in doc.recipients:
        _organization(mh, "To", to)
    _sub(mh, "DocumentId", doc.document_id)
    code = _sub(mh, "Code")
    _sub(code, "CodeNumber", doc.code_number)
    _sub(code, "CodeNotation", doc.code_notation)
    prom = _sub(mh, "PromulgationInfo")
    _sub(prom, "Place", doc.place)
    _sub(prom, "PromulgationDate", doc.promulgation_date)
    dtype = _sub(mh, "DocumentType")
    _sub(dtype, "Type", doc.doc_type)
    if doc.type_detail:
        _sub(dtype, "TypeDetail", doc.type_detail)
    _sub(dtype, "TypeName", doc.type_name)
    _sub(mh, "Subject", doc.subject)
    _sub(mh, "Content", doc.content)
    signer = _sub(mh, "SignerInfo")
    _sub(signer, "Competence", doc.signer_competence)
    _sub(signer, "Position", doc.signer_position)
    _sub(signer, "FullName", doc.signer_name)
    if doc.due_date:
        _sub(mh, "DueDate", doc.due_date)
    other = _sub(mh, "OtherInfo")
    _sub(other, "Priority", doc.priority or "0")
    for rf in doc.response_for:
        _response_for(mh, rf)
    if doc.steering_type:
        _sub(mh, "SteeringType", doc.steering_type)
    if doc.to_places:
        places = _sub(mh, "ToPlaces")
        for p in doc.to_places:
            _sub(places, "Place", p)
    header = mh.getparent()
    trace = _sub(header, "TraceHeaderList")
    for organ_id, ts in doc.trace:
        th = _sub(trace, "TraceHeader")
        _sub(th, "OrganId", _strict(organ_id))
        _sub(th, "Timestamp", ts)
    if doc.business is not None:
        bus = _sub(trace, "Bussiness")
        if doc.business.document_id:
            _sub(bus, "DocumentId", doc.business.document_id)
        _sub(bus, "BussinessDocType", doc.business.doc_type)
        if doc.business.reason:
            _sub(bus, "BussinessDocReason", doc.business.reason)
    body = _sub(env, "edXMLBody")
    manifest = _sub(body, "edXMLManifest")
    manifest.set("version", "1.0")
    encoded = _sub(root, "AttachmentEncoded") if doc.attachments else None
    for a in doc.attachments:
        media = detect_type(a.data)
        ref = _sub(manifest, "Reference")
        _sub(ref, "ContentId", a.content_id)
        _sub(ref, "ContentType", media)
        _sub(ref, "Description", a.description)
        _sub(ref, "AttachmentName", a.name)
        att = _sub(encoded, "Attachment")
        _sub(att, "ContentId", a.content_id)
        _sub(att, "AttachmentName", a.name)
        _sub(att, "Description", a.description)
        _sub(att, "ContentType", media)
        _sub(att, "ContentTransferEncoded", base64.b64encode(a.data).decode("ascii"))
    return root


def build_status(st: StatusPacket) -> etree._Element:
    root, _env, mh = _skeleton()
    _organization(mh, "From", st.sender)
    _response_for(mh, st.response_for)
    staff = _sub(mh, "StaffInfo")
    for tag in ("Department", "Staff", "Mobile", "Email"):
        if st.staff.get(tag):
            _sub(staff, tag, st.staff[tag])
    _sub(mh, "StatusCode", st.status_code)
    _sub(mh, "Description", st.description)
    _sub(mh, "Timestamp", st.timestamp)
    return root


def sign_edxml(root: etree._Element, identity: SigningIdentity, *,
               profile: str = "default") -> etree._Element:
    """Add the enveloped signature over the whole packet to edXMLHeader, in place."""
    p = EDXML_PROFILES[profile]
    c14n_alg, sig_alg, digest_alg = p.c14n, p.signature, p.digest
    if not isinstance(identity.key, rsa.RSAPrivateKey):
        raise PacketError("edXML signatures use RSA keys")
    header = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    for old in header.findall(DS + "Signature") + header.findall(E + "Signature"):
        header.remove(old)
    c14n = C14N[c14n_alg].lxml_args()
    digest = hashlib.new(DIGESTS[digest_alg], etree.tostring(root, method="c14n",
                                                             **c14n)).digest()
    sig = etree.SubElement(header, DS + "Signature", nsmap={"ds": DSIG_NS})
    si = etree.SubElement(sig, DS + "SignedInfo")
    etree.SubElement(si, DS + "CanonicalizationMethod", Algorithm=c14n_alg)
    etree.SubElement(si, DS + "SignatureMethod", Algorithm=sig_alg)
    ref = etree.SubElement(si, DS + "Reference", URI="")
    transforms = etree.SubElement(ref, DS + "Transforms")
    etree.SubElement(transforms, DS + "Transform", Algorithm=ENVELOPED)
    etree.SubElement(transforms, DS + "Transform", Algorithm=c14n_alg)
    etree.SubElement(ref, DS + "DigestMethod", Algorithm=digest_alg)
    etree.SubElement(ref, DS + "DigestValue").text = base64.b64encode(digest).decode()
    signed_info = etree.tostring(si, method="c14n", **c14n)
    value = identity.key.sign(signed_info, padding.PKCS1v15(), SIGNATURES[sig_alg].hash())
    etree.SubElement(sig, DS + "SignatureValue").text = base64.b64encode(value).decode()
    x509_data = etree.SubElement(etree.SubElement(sig, DS + "KeyInfo"), DS + "X509Data")
    der = identity.cert.public_bytes(serialization.Encoding.DER)
    etree.SubElement(x509_data, DS + "X509Certificate").text = base64.b64encode(der).decode()
    return root
