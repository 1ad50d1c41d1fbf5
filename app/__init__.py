"""Hongli (红利): two-way rebate red-packet campaigns on WeChat, as a Flask application.

Importing this package has no side effects; :func:`create_app` builds an application.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.settings import Settings, load_settings

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app from ``settings`` (loaded from file and environment when omitted)."""
    from app.apidocs.views import bp as apidocs_bp
    from app.audit.views import blp as audit_blp
    from app.behaviour.views import blp as behaviour_blp
    from app.books.views import blp as books_blp
    from app.campaigns.cli import budgets_cli
    from app.campaigns.views import blp as campaigns_blp
    from app.console.views import blp as console_blp
    from app.consumers.views import h5 as h5_oauth_blp
    from app.consumers.views import mp as mp_identity_blp
    from app.core.http import init_http
    from app.core.inputs import init_inputs, install_converters
    from app.core.logging import configure_logging
    from app.core.pool import install_idle_ping
    from app.core.sqlite import install_serialisation
    from app.coupons.views import console as console_coupons_blp
    from app.coupons.views import mp as mp_coupons_blp
    from app.coupons.views import notify as coupon_notify_bp
    from app.dashboard.views import blp as dashboard_blp
    from app.devclock import init_dev_clock
    from app.extensions import api, db, migrate
    from app.followers.views import blp as followers_blp
    from app.followers.views import bp as oa_server_bp
    from app.h5.views import bp as h5_pages_bp
    from app.health.views import blp as health_blp
    from app.invitations.views import blp as invitations_blp
    from app.ledger.cli import ledger_cli
    from app.merchants.cli import merchants_cli
    from app.merchants.credentials import init_sealer
    from app.merchants.snapshots import init_app as init_merchant_snapshots
    from app.messages.views import console as console_messages_blp
    from app.messages.views import mp as mp_messages_blp
    from app.metrics.views import bp as metrics_bp
    from app.orders.views import console as console_orders_blp
    from app.orders.views import mp as mp_orders_blp
    from app.orders.views import shop as shop_orders_blp
    from app.payments.cli import reconcile_cli
    from app.payments.views import bp as pay_notify_bp
    from app.payouts.cli import payouts_cli
    from app.payouts.views import blp as console_payouts_blp
    from app.personal.views import console as console_personal_blp
    from app.personal.views import mp as mp_personal_blp
    from app.pools.cli import pools_cli
    from app.pools.views import console as console_pools_blp
    from app.pools.views import mp as mp_pools_blp
    from app.queue.after_commit import install_session_hooks
    from app.queue.cli import worker_command
    from app.queue.queues import init_queue
    from app.risk.views import console as console_risk_blp
    from app.risk.views import mp as mp_risk_blp
    from app.shop_keys.cli import shop_keys_cli
    from app.shop_keys.views import blp as shop_keys_blp
    from app.shop_keys.views import shop_blp as shop_identity_blp
    from app.staff.cli import staff_cli
    from app.staff.views import blp as staff_blp
    from app.wallet.views import blp as wallet_blp
    from app.web import init_console_pages
    from app.withdrawals.views import console as console_withdrawals_blp
    from app.withdrawals.views import mp as mp_withdrawals_blp

    settings = settings or load_settings()
    configure_logging(settings.logging.level, settings.logging.format)

    app = Flask(__name__, instance_relative_config=True)
    app.config.update(_flask_config(settings))
    app.extensions["hongli.settings"] = settings
    if settings.web.trusted_proxy_count:
        n = settings.web.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=settings.database.is_sqlite)
    if settings.database.is_sqlite:
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        with app.app_context():
            install_serialisation(db.engine, busy_timeout_ms=settings.database.sqlite_busy_timeout_ms)
    with app.app_context():
        install_idle_ping(db.engine)
    install_session_hooks()
    init_queue(app, settings)
    init_sealer(app, settings)
    init_merchant_snapshots(app)

    install_converters(app)  # before any route is added: <int:…> segments are bounded ids
    api.init_app(app)
    api.register_blueprint(health_blp)
    api.register_blueprint(mp_identity_blp)
    api.register_blueprint(h5_oauth_blp)
    api.register_blueprint(staff_blp)
    api.register_blueprint(shop_keys_blp)
    api.register_blueprint(shop_identity_blp)
    api.register_blueprint(audit_blp)
    api.register_blueprint(console_blp)
    api.register_blueprint(shop_orders_blp)
    api.register_blueprint(mp_orders_blp)
    api.register_blueprint(console_orders_blp)
    api.register_blueprint(books_blp)
    api.register_blueprint(behaviour_blp)
    api.register_blueprint(campaigns_blp)
    api.register_blueprint(wallet_blp)
    api.register_blueprint(mp_withdrawals_blp)
    api.register_blueprint(console_withdrawals_blp)
    api.register_blueprint(console_payouts_blp)
    api.register_blueprint(invitations_blp)
    api.register_blueprint(console_coupons_blp)
    api.register_blueprint(mp_coupons_blp)
    api.register_blueprint(followers_blp)
    api.register_blueprint(dashboard_blp)
    api.register_blueprint(mp_messages_blp)
    api.register_blueprint(console_messages_blp)
    api.register_blueprint(mp_personal_blp)
    api.register_blueprint(console_personal_blp)
    api.register_blueprint(console_risk_blp)
    api.register_blueprint(mp_risk_blp)
    api.register_blueprint(console_pools_blp)
    api.register_blueprint(mp_pools_blp)
    app.register_blueprint(pay_notify_bp)
    app.register_blueprint(coupon_notify_bp)
    app.register_blueprint(oa_server_bp)
    app.register_blueprint(h5_pages_bp)
    app.register_blueprint(apidocs_bp)
    app.register_blueprint(metrics_bp)
    init_console_pages(app)  # the console's pages (/console/…) over the same services
    init_http(app)  # after flask-smorest, so our error envelope replaces its handlers
    init_inputs(app)  # after the request id is assigned, so a refused body is logged with it
    _connect_domains(app)

    app.cli.add_command(worker_command)
    app.cli.add_command(merchants_cli)
    app.cli.add_command(staff_cli)
    app.cli.add_command(reconcile_cli)
    app.cli.add_command(shop_keys_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(payouts_cli)
    app.cli.add_command(budgets_cli)
    app.cli.add_command(pools_cli)
    init_dev_clock(app, settings)  # the development clock (never in production) and `flask dev`
    return app


def _connect_domains(app: Flask) -> None:
    """Wire the domains through their seams: payment events to the rebate engine, red packets into pay."""
    from app.coupons import costs as coupon_costs
    from app.coupons import merchant_coupons
    from app.coupons import redemption as coupon_redemption
    from app.coupons import service as coupon_service
    from app.dashboard.hooks import set_coupon_cost_provider
    from app.events.bus import ORDER_CLOSED, ORDER_PAID, REFUND_SUCCEEDED, subscribe
    from app.ledger.accounts import install_account_cache_hooks
    from app.limits import checks as limit_checks
    from app.payments.discounts import set_discount_resolver, set_held_discount
    from app.payouts import checks as payout_checks
    from app.personal import checks as personal_checks
    from app.personal import service as personal
    from app.pools import checks as pool_checks
    from app.rebates import checks as rebate_checks
    from app.rebates import service as rebates
    from app.red_packets.service import apply_to_order, release_from_order
    from app.risk.engine import on_refund_succeeded as risk_on_refund
    from app.withdrawals import checks as withdrawal_checks

    install_account_cache_hooks()
    # Coupons first: a used voucher's row is locked before any ledger account, as COUPON.USE locks them.
    subscribe(app, ORDER_PAID, coupon_redemption.on_order_paid)
    subscribe(app, ORDER_PAID, merchant_coupons.on_order_paid)
    subscribe(app, "follower.subscribed", coupon_service.on_follower_subscribed)
    subscribe(app, ORDER_PAID, rebates.on_order_paid)
    subscribe(app, REFUND_SUCCEEDED, rebates.on_refund_succeeded)
    subscribe(app, REFUND_SUCCEEDED, merchant_coupons.on_refund_succeeded)
    subscribe(app, REFUND_SUCCEEDED, risk_on_refund)
    subscribe(app, ORDER_CLOSED, rebates.on_order_closed)
    subscribe(app, ORDER_CLOSED, merchant_coupons.on_order_closed)
    subscribe(app, ORDER_PAID, personal.on_order_paid)
    subscribe(app, ORDER_CLOSED, personal.on_order_closed)
    subscribe(app, REFUND_SUCCEEDED, personal.on_refund_succeeded)
    set_discount_resolver(app, apply_to_order, release_from_order)
    set_held_discount(app, merchant_coupons.held_discount)
    set_coupon_cost_provider(coupon_costs.coupon_cost_fen)  # the dashboard's coupon cost, from the ledger
    rebate_checks.register()
    payout_checks.register()
    limit_checks.register()
    withdrawal_checks.register()
    personal_checks.register()
    pool_checks.register()


def _flask_config(settings: Settings) -> dict[str, Any]:
    engine_options: dict[str, Any] = {
        "pool_pre_ping": False,  # app.core.pool pings connections that sat idle instead
        "pool_recycle": settings.database.pool_recycle_seconds,
    }
    if not settings.database.is_sqlite:
        engine_options["pool_size"] = settings.database.pool_size
        if not settings.database.prepared_statements:
            engine_options["connect_args"] = {"prepare_threshold": None}  # PgBouncer, transaction pooling
    return {
        "SECRET_KEY": settings.web.secret_key.get_secret_value(),
        "MAX_CONTENT_LENGTH": settings.web.max_content_length_bytes,
        "SQLALCHEMY_DATABASE_URI": _sqlite_in_instance(settings.database.url),
        "SQLALCHEMY_ECHO": settings.database.echo,
        "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
        "API_TITLE": "Hongli",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "API_SPEC_OPTIONS": {
            "info": {"description": "Two-way rebate red-packet campaigns on WeChat. Money is integer fen."},
        },
        "SESSION_COOKIE_HTTPONLY": True,
        "PERMANENT_SESSION_LIFETIME": settings.security.staff_session_ttl_seconds,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": settings.web.public_base_url.startswith("https://"),
    }


def _sqlite_in_instance(url: str) -> str:
    # Relative SQLite paths are resolved against the project root, not the process's cwd.
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            return "sqlite:///" + str(Path(__file__).resolve().parent.parent / relative)
    return url
