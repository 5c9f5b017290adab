"""Every official sample packet gets a definite outcome, and the test names its reason."""

from pathlib import Path

import pytest

from adapter.crypto.keys import load_certificates
from adapter.edxml import parse_edxml, verify_edxml_signature
from adapter.errors import PacketError
from adapter.xml.safe import parse_untrusted

#: the public VPCP SDK samples, copied unchanged into the project (see the README there)
SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "edxml" / "vpcp-samples"

STATUS = {"status.edxml": "01", "status_inbox_01.edxml": "01", "status_rejection_02.edxml": "02",
          "status_acceptance_03.edxml": "03", "status_assignment_04.edxml": "04",
          "status_processing_05.edxml": "05", "status_finish_06.edxml": "06",
          "status_cancellation_13.edxml": "13", "status_change-acceptance_15.edxml": "15",
          "status_change-rejection_16.edxml": "16"}
UNPARSEABLE = {
    "edoc.edxml": "Namespace prefix xlink for href on Reference is not defined",
    "edoc_new.edxml": "4 stray bytes b'1212' before the XML declaration",
}
COPIED_SIGNATURE = ["edoc_replacement.edxml", "edoc_revocation.edxml", "edoc_update.edxml"]
BUSINESS = {"edoc_replacement.edxml": "3", "edoc_revocation.edxml": "1",
            "edoc_update.edxml": "2"}


@pytest.fixture(scope="module")
def anchors(pki):
    return load_certificates(pki / "ca.crt")


def test_every_sample_is_covered():
    covered = set(STATUS) | set(UNPARSEABLE) | set(COPIED_SIGNATURE)
    assert {p.name for p in SAMPLES.glob("*.edxml")} == covered


@pytest.mark.parametrize("name", sorted(UNPARSEABLE))
def test_malformed_samples_are_rejected_with_their_reason(name):
    with pytest.raises(PacketError) as ei:
        parse_edxml((SAMPLES / name).read_bytes(), name=name)
    assert UNPARSEABLE[name] in str(ei.value)
    assert name in str(ei.value) and "line" in str(ei.value)


@pytest.mark.parametrize("name", sorted(STATUS))
def test_status_samples_are_accepted_unsigned(name, anchors):
    data = (SAMPLES / name).read_bytes()
    sig = verify_edxml_signature(parse_untrusted(data), anchors)
    parsed = parse_edxml(data, name=name, signature=sig)
    assert parsed.kind == "status"
    assert parsed.packet.status_code == STATUS[name]
    assert parsed.packet.response_for.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert parsed.signature.outcome == "absent"
    assert parsed.verdict("reject") == (True, "accepted")


@pytest.mark.parametrize("name", COPIED_SIGNATURE)
def test_documents_with_copied_signatures_are_refused_under_reject(name, anchors):
    data = (SAMPLES / name).read_bytes()
    root = parse_untrusted(data)
    default = verify_edxml_signature(root, anchors)
    assert default.outcome == "invalid" and not default.in_dsig_namespace
    assert "rsa-sha1/sha1 are not allowed under the 'default' profile" in default.detail
    legacy = verify_edxml_signature(root, anchors, profile="legacy")
    assert legacy.outcome == "invalid"
    assert "unreadable certificate" in legacy.detail  # the sample's certificate is truncated
    parsed = parse_edxml(data, name=name, signature=legacy)
    assert parsed.kind == "edoc"
    assert parsed.packet.business.doc_type == BUSINESS[name]
    assert len(parsed.packet.recipients) == 3
    (att,) = parsed.packet.attachments
    # labelled application/zip under a name not ending in .zip: the library's zip, unpacked
    assert att.declared_type == "application/zip" and att.name.endswith(".doc")
    assert att.unpacked_from.endswith(".edxml") and att.data.startswith(b"<?xml")
    ok, why = parsed.verdict("reject")
    assert not ok and "signature invalid" in why
    assert parsed.verdict("flag")[0] is True


def test_stray_bytes_removed_the_malformed_organisation_id_decides(tmp_path):
    data = (SAMPLES / "edoc_new.edxml").read_bytes()
    cleaned = data[data.index(b"<?xml"):]  # a copy: the official file is never edited
    with pytest.raises(PacketError, match=r"organisation id '28\.22\.H17' is not of the form"):
        parse_edxml(cleaned, name="edoc_new (cleaned)")
    parsed = parse_edxml(cleaned, name="edoc_new (cleaned)", tolerant_ids=True)
    assert any("28.22.H17" in w and "tolerated" in w for w in parsed.warnings)


def test_inspect_command_gives_each_sample_its_exit_code(pki, capsys):
    from adapter.cli.main import main
    ca = str(pki / "ca.crt")
    assert main(["edxml", "inspect", str(SAMPLES / "status_finish_06.edxml"), "--ca", ca]) == 0
    assert "06 (finished)" in capsys.readouterr().out
    assert main(["edxml", "inspect", str(SAMPLES / "edoc_update.edxml"), "--ca", ca]) == 1
    out = capsys.readouterr().out
    assert "refused under policy 'reject'" in out and "outside the XML-DSig namespace" in out
    assert main(["edxml", "inspect", str(SAMPLES / "edoc_update.edxml"), "--ca", ca,
                 "--policy", "flag"]) == 0
    assert main(["edxml", "inspect", str(SAMPLES / "edoc_new.edxml"), "--ca", ca]) == 1
    assert "stray bytes" in capsys.readouterr().out
