"""edXML (QCVN 102:2016): documents and status packets of the national document axis."""

from adapter.edxml.build import build_document, build_status, sign_edxml
from adapter.edxml.model import ParsedEdxml
from adapter.edxml.parse import EdxmlError, parse_edxml, read_edxml
from adapter.edxml.signature import (
    EdxmlVerification,
    unverified_edxml,
    verify_edxml,
    verify_edxml_signature,
)

__all__ = ["EdxmlError", "EdxmlVerification", "ParsedEdxml", "build_document", "build_status",
           "parse_edxml", "read_edxml", "sign_edxml", "unverified_edxml", "verify_edxml",
           "verify_edxml_signature"]
