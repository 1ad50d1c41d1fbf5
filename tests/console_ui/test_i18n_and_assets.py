"""Every text of the console has its zh-CN translation; the rule builder's form and the rule document are
the same thing; the vendored ECharts is the pinned one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import MultiDict

from app.campaigns.service import validated_rules
from app.core.errors import InvalidInput
from app.web import i18n, nav, pages_review, rule_form

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "app" / "web" / "templates" / "console"
LITERAL = re.compile(r"""_\((["'])(.+?)\1[,)]""")


def test_every_text_of_the_console_has_a_zh_cn_translation() -> None:
    texts: set[str] = set()
    for template in TEMPLATES.glob("*.html"):
        texts |= {match.group(2) for match in LITERAL.finditer(template.read_text())}
    texts |= {entry.label for entry in nav.ENTRIES}
    texts |= {field.label for fields in rule_form.KIND_FIELDS.values() for field in fields}
    texts |= {field.label for field in rule_form.CAPS} | set(rule_form.KIND_FIELDS)
    texts |= set(pages_review.POLICY_LABELS.values())
    for module in (
        "pages_campaigns",
        "pages_money",
        "pages_people",
        "pages_exports",
        "pages_coupons",
        "pages_messages",
        "pages_pools",
        "pages_review",
    ):
        source = (ROOT / "app" / "web" / f"{module}.py").read_text()
        texts |= set(re.findall(r'flash\("([^"]+)"', source))
    assert len(texts) > 150
    missing = sorted(text for text in texts if text not in i18n.ZH_CN)
    assert missing == []
    assert (
        i18n.translate("Dashboard", "zh-CN") == "仪表盘" and i18n.translate("Dashboard", "en") == "Dashboard"
    )
    assert i18n.pick(None, "en") == "zh-CN" and i18n.pick("en", None) == "en"  # Chinese first


EVERY_KIND: dict[str, Any] = {
    "rules": [
        {
            "id": "two-way",
            "kind": "two_way",
            "priority": 100,
            "stacking": "combinable",
            "trigger_min_order_fen": 20000,
            "packet_value_fen": 1000,
            "packet_min_spend_fen": 5000,
            "packet_valid_days": 30,
            "issuer_rate_bp": 1000,
            "buyer_rate_bp": 550,
            "max_order_fen": 100000,
            "buyer_cap_fen": 3000,
        },
        {
            "id": "ratio",
            "kind": "ratio",
            "priority": 90,
            "stacking": "exclusive",
            "rate_bp": 300,
            "min_order_fen": 1,
        },
        {
            "id": "ladder",
            "kind": "ladder",
            "priority": 80,
            "stacking": "exclusive",
            "tiers": [{"min_order_fen": 10000, "rate_bp": 200}, {"min_order_fen": 50000, "rate_bp": 500}],
        },
        {
            "id": "fixed",
            "kind": "fixed",
            "priority": 70,
            "stacking": "combinable",
            "amount_fen": 888,
            "min_order_fen": 0,
        },
        {
            "id": "cash-back",
            "kind": "cashback",
            "priority": 60,
            "stacking": "combinable",
            "rate_bp": 800,
            "requires_red_packet": True,
        },
        {
            "id": "invite",
            "kind": "invite",
            "priority": 50,
            "stacking": "combinable",
            "inviter_fen": 500,
            "invitee_fen": 300,
        },
        {
            "id": "promoters",
            "kind": "distribution",
            "priority": 40,
            "stacking": "combinable",
            "level1_bp": 500,
            "level2_bp": 150,
        },
        {
            "id": "launch-week",
            "kind": "multiplier",
            "priority": 30,
            "stacking": "combinable",
            "starts_at": "2026-12-01T00:00:00+08:00",
            "ends_at": "2026-12-08T00:00:00+08:00",
            "factor_bp": 20000,
            "applies_to": ["ratio", "fixed"],
        },
    ],
    "caps": {
        "per_order_fen": 5000,
        "per_user_day_fen": 10000,
        "per_user_week_fen": 30000,
        "per_user_month_fen": 90000,
    },
}


def _as_form(document: dict[str, Any]) -> MultiDict[str, str]:
    """What the builder's fields post for ``document`` (as the page renders them)."""
    shown = rule_form.form_values(document)
    form: MultiDict[str, str] = MultiDict()
    for n, rule in enumerate(shown["rules"]):
        for key in ("id", "kind", "priority", "stacking"):
            form[f"rules-{n}-{key}"] = str(rule[key])
        for name, value in rule["values"].items():
            if value is True:
                form[f"rules-{n}-{name}"] = "on"
            elif value is not False:
                form[f"rules-{n}-{name}"] = value
    for name, value in shown["caps"].items():
        form[f"caps-{name}"] = value
    return form


def test_the_builder_writes_every_rule_kind_and_the_caps() -> None:
    validated_rules(EVERY_KIND)  # a valid document to start with
    built = rule_form.document_from_form(_as_form(EVERY_KIND))
    assert built == EVERY_KIND
    assert {rule["kind"] for rule in built["rules"]} == set(rule_form.KIND_FIELDS)


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("rules-0-packet_value_fen", "10.001", "rules.0.packet_value_fen"),
        ("rules-0-issuer_rate_bp", "ten", "rules.0.issuer_rate_bp"),
        ("rules-0-buyer_rate_bp", "5.555", "rules.0.buyer_rate_bp"),
        ("rules-0-packet_valid_days", "1e3", "rules.0.packet_valid_days"),
        ("rules-0-kind", "pyramid", "rules.0.kind"),
    ],
)
def test_the_builder_names_a_bad_field(field: str, value: str, path: str) -> None:
    form = _as_form(EVERY_KIND)
    form[field] = value
    with pytest.raises(InvalidInput) as refused:
        rule_form.document_from_form(form)
    assert list(refused.value.details["fields"]) == [path]


def test_the_vendored_echarts_is_the_pinned_one() -> None:
    done = subprocess.run(  # noqa: S603 - our own script, no network in --check
        ["bash", str(ROOT / "scripts" / "vendor-echarts.sh"), "--check"],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "echarts 6.1.0" in done.stdout


def test_the_builder_pays_a_packet_or_the_buyers_leg_as_a_coupon_of_a_stock() -> None:
    two_way = dict(EVERY_KIND["rules"][0])
    assert two_way["kind"] == "two_way"
    with_coupons = {
        "rules": [
            two_way
            | {"reward": "coupon", "coupon_stock_id": 7, "buyer_leg": "coupon", "buyer_leg_stock_id": 8}
        ]
    }
    validated_rules(with_coupons)
    assert rule_form.document_from_form(_as_form(with_coupons)) == with_coupons
    form = _as_form(with_coupons)
    form["rules-0-buyer_leg_stock_id"] = "eight"
    with pytest.raises(InvalidInput) as refused:
        rule_form.document_from_form(form)
    assert list(refused.value.details["fields"]) == ["rules.0.buyer_leg_stock_id"]


def test_every_code_with_an_english_text_has_a_chinese_one() -> None:
    assert set(i18n.EN) <= set(i18n.ZH_CN)
    assert i18n.translate("pool_open", "en") == "open" and i18n.translate("pool_open", "zh-CN") == "进行中"
    assert i18n.translate("Red-packet pools", "en") == "Red-packet pools"
