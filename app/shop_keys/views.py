"""``/api/console/v1/shop-keys`` (owners manage keys) and ``/api/shop/v1/whoami`` (a shop checks its key)."""

from __future__ import annotations

from typing import Any

from app.audit.service import Actor
from app.auth.guards import (
    current_merchant_id,
    current_shop,
    current_staff,
    shop_key_required,
    staff_required,
)
from app.auth.principals import Role
from app.core.api import Blueprint
from app.core.tx import commit
from app.shop_keys.models import ShopApiKey
from app.shop_keys.schemas import (
    CreateShopKeySchema,
    IssuedShopKeySchema,
    ShopKeyListSchema,
    WhoAmISchema,
)
from app.shop_keys.service import (
    IssuedKey,
    ShopIdentity,
    create_shop_key,
    list_shop_keys,
    revoke_shop_key,
    rotate_shop_key,
    shop_identity,
)

blp = Blueprint(
    "console_shop_keys",
    __name__,
    url_prefix="/api/console/v1/shop-keys",
    description="API keys of the merchant's shop system (owner manages; the key is shown once).",
)
shop_blp = Blueprint("shop_identity", __name__, url_prefix="/api/shop/v1", description="Shop API (API key).")


def _actor() -> Actor:
    return Actor("staff", str(current_staff().staff_id))


@blp.route("", methods=["POST"])
@staff_required(Role.OWNER)
@blp.arguments(CreateShopKeySchema)
@blp.response(201, IssuedShopKeySchema)
def create_key(data: dict[str, Any]) -> IssuedKey:
    """Create a key; the answer is the only time the key itself is shown. Owner only."""
    issued = create_shop_key(merchant_id=current_merchant_id(), name=data["name"], actor=_actor())
    commit()
    return issued


@blp.route("", methods=["GET"])
@staff_required(Role.OWNER, Role.VIEWER)
@blp.response(200, ShopKeyListSchema)
def list_keys() -> dict[str, list[ShopApiKey]]:
    """Every key of the merchant (never the secret). Owner or viewer."""
    return {"items": list_shop_keys(merchant_id=current_merchant_id())}


@blp.route("/<int:key_id>/rotate", methods=["POST"])
@staff_required(Role.OWNER)
@blp.response(201, IssuedShopKeySchema)
def rotate_key(key_id: int) -> IssuedKey:
    """Revoke the key at once and issue its replacement (shown once). Owner only."""
    issued = rotate_shop_key(merchant_id=current_merchant_id(), key_id=key_id, actor=_actor())
    commit()
    return issued


@blp.route("/<int:key_id>", methods=["DELETE"])
@staff_required(Role.OWNER)
@blp.response(204)
def revoke_key(key_id: int) -> None:
    """Revoke the key at once (idempotent). Owner only."""
    revoke_shop_key(merchant_id=current_merchant_id(), key_id=key_id, actor=_actor())
    commit()


@shop_blp.route("/whoami", methods=["GET"])
@shop_key_required
@shop_blp.response(200, WhoAmISchema)
def whoami() -> ShopIdentity:
    """The merchant and key (display prefix) this API key authenticates as."""
    return shop_identity(current_shop())
