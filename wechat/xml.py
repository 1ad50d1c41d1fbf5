"""v2 Pay / official-account XML: parse only through defusedxml, build with CDATA.

A body carrying a DTD, entity declaration or external reference is refused outright
(``XMLSecurityError``): WeChat never sends one, so any such body is an attack (XXE, billion laughs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from wechat.errors import WeChatXMLError, XMLSecurityError

__all__ = ["XMLValue", "parse_xml", "to_xml"]

XMLValue = str | dict[str, Any] | list[Any]

# Bodies above this are not WeChat's; refusing early bounds memory before parsing.
MAX_XML_BYTES = 256 * 1024


def _element_to_value(element: Any) -> XMLValue:
    children = list(element)
    if not children:
        return str(element.text or "")
    result: dict[str, Any] = {}
    for child in children:
        value = _element_to_value(child)
        if child.tag in result:
            existing = result[child.tag]
            if isinstance(existing, list):
                existing.append(value)
            else:
                result[child.tag] = [existing, value]
        else:
            result[child.tag] = value
    return result


def parse_xml(body: bytes | str) -> dict[str, Any]:
    """Parse ``<xml>…</xml>`` into {tag: text}; nested elements become dicts, repeats lists.

    Raises ``XMLSecurityError`` on DTD / entities and ``WeChatXMLError`` on anything unparsable.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if len(raw) > MAX_XML_BYTES:
        raise WeChatXMLError("XML body too large", raw_body=raw[:1024])
    try:
        root = fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise XMLSecurityError(f"refused XML: {type(exc).__name__}", raw_body=raw[:1024]) from exc
    except (ParseError, ValueError) as exc:
        raise WeChatXMLError(f"unparsable XML: {exc}", raw_body=raw[:1024]) from exc
    value = _element_to_value(root)
    if not isinstance(value, dict):
        return {}
    return value


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside one CDATA section; split it across two.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def to_xml(fields: Mapping[str, object]) -> str:
    """Render a flat mapping as ``<xml>`` (keys sorted; ints bare, strings in CDATA; None skipped)."""
    parts = ["<xml>"]
    for key in sorted(fields):
        value = fields[key]
        if value is None:
            continue
        if not key.replace("_", "").isalnum():
            raise ValueError(f"illegal XML tag {key!r}")
        if isinstance(value, bool):
            raise TypeError(f"{key}: booleans have no v2 XML form")
        if isinstance(value, int):
            parts.append(f"<{key}>{value}</{key}>")
        else:
            parts.append(f"<{key}>{_cdata(str(value))}</{key}>")
    parts.append("</xml>")
    return "".join(parts)
