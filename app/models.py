"""Imports every domain's models so the metadata (and Alembic autogenerate) sees all tables.

Each domain package adds its ``models`` module here.
"""

from app.audit import models as audit_models
from app.behaviour import models as behaviour_models
from app.campaigns import models as campaign_models
from app.consumers import models as consumer_models
from app.coupons import models as coupon_models
from app.events import models as event_models
from app.followers import models as follower_models
from app.gateway import models as gateway_models
from app.invitations import models as invitation_models
from app.ledger import models as ledger_models
from app.limits import models as limit_models
from app.merchants import models as merchant_models
from app.messages import models as message_models
from app.orders import models as order_models
from app.payments import models as payment_models
from app.payouts import models as payout_models
from app.personal import models as personal_models
from app.pools import models as pool_models
from app.rebates import models as rebate_models
from app.red_packets import models as red_packet_models
from app.reviews import models as review_models
from app.risk import models as risk_models
from app.shop_keys import models as shop_key_models
from app.staff import models as staff_models
from app.withdrawals import models as withdrawal_models

__all__ = [
    "audit_models",
    "behaviour_models",
    "campaign_models",
    "consumer_models",
    "coupon_models",
    "event_models",
    "follower_models",
    "gateway_models",
    "invitation_models",
    "ledger_models",
    "limit_models",
    "merchant_models",
    "message_models",
    "order_models",
    "payment_models",
    "payout_models",
    "personal_models",
    "pool_models",
    "rebate_models",
    "red_packet_models",
    "review_models",
    "risk_models",
    "shop_key_models",
    "staff_models",
    "withdrawal_models",
]
