"""Each consumer has one stable invite code; the share path, link and QR code carry it."""

from __future__ import annotations

import io

import png
import qrcode
from flask import Flask

from app.invitations.service import CODE_ALPHABET
from tests.invitations.helpers import as_person
from tests.payments.conftest import Shop


def test_the_code_is_created_once_and_stays(shop: Shop, app: Flask) -> None:
    first = shop.client.get("/api/mp/v1/me/invite", headers=shop.consumer_headers)
    again = shop.client.get("/api/mp/v1/me/invite", headers=shop.consumer_headers)
    assert first.status_code == again.status_code == 200
    assert first.json == again.json
    code = first.json["code"]
    assert len(code) == 8 and set(code) <= set(CODE_ALPHABET)
    assert not set(code) & set("01OIL")
    base = app.extensions["hongli.settings"].web.public_base_url.rstrip("/")
    assert first.json == {
        "code": code,
        "share_path": f"/pages/index/index?invite={code}",
        "share_url": f"{base}/h5/?invite={code}",
        "qr_png_url": f"{base}/api/mp/v1/me/invite/qr.png",
    }
    bob = as_person(shop, "bob")
    other = bob.client.get("/api/mp/v1/me/invite", headers=bob.consumer_headers).json["code"]
    assert other != code


def test_the_qr_code_is_a_png_of_the_share_path(shop: Shop) -> None:
    path = shop.client.get("/api/mp/v1/me/invite", headers=shop.consumer_headers).json["share_path"]
    response = shop.client.get("/api/mp/v1/me/invite/qr.png", headers=shop.consumer_headers)
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    data = response.get_data()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height, rows, _ = png.Reader(file=io.BytesIO(data)).read()
    pixels = [list(row) for row in rows]
    # The same symbol qrcode makes for the path: 8 pixels a module, a 4-module quiet zone (dark = 0).
    expected = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    expected.add_data(path)
    expected.make(fit=True)
    matrix = expected.get_matrix()
    assert width == height == len(matrix) * 8 >= (21 + 8) * 8
    assert [[not pixels[y * 8 + 4][x * 8 + 4] for x in range(len(matrix))] for y in range(len(matrix))] == [
        [bool(module) for module in row] for row in matrix
    ]
