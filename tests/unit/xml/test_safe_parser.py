import pytest

from adapter.errors import UnsafeXmlError
from adapter.xml.safe import parse_untrusted

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<r>&x;</r>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<r>&c;</r>"""
DOCTYPE_ONLY = b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://evil.example/r.dtd"><r/>'


@pytest.mark.parametrize("data", [XXE, BILLION_LAUGHS, DOCTYPE_ONLY])
def test_doctype_and_entities_are_refused(data):
    with pytest.raises(UnsafeXmlError, match="DOCTYPE|entity"):
        parse_untrusted(data, name="evil.xml")


def test_external_entity_content_never_appears():
    try:
        root = parse_untrusted(XXE)
    except UnsafeXmlError:
        return
    raise AssertionError(f"XXE parsed: {root.text!r}")


def test_oversized_input_is_refused_before_parsing():
    with pytest.raises(UnsafeXmlError, match="exceed the limit"):
        parse_untrusted(b"<r>" + b"x" * 2000 + b"</r>", max_bytes=1000)


def test_truncated_input_names_the_line():
    with pytest.raises(UnsafeXmlError) as ei:
        parse_untrusted(b"<r>\n<a>1</a>\n<b>", name="cut.xml")
    assert "cut.xml" in str(ei.value) and "line" in str(ei.value)


def test_invalid_utf8_is_refused():
    with pytest.raises(UnsafeXmlError, match="not well-formed"):
        parse_untrusted('<?xml version="1.0" encoding="UTF-8"?><r>\xff\xfe</r>'.encode("latin-1"))


def test_text_and_empty_input_are_refused():
    with pytest.raises(UnsafeXmlError, match="expected bytes"):
        parse_untrusted("<r/>")  # type: ignore[arg-type]
    with pytest.raises(UnsafeXmlError, match="empty"):
        parse_untrusted(b"   ")


def test_plain_document_parses():
    assert parse_untrusted(b"<r><a>1</a></r>").findtext("a") == "1"
