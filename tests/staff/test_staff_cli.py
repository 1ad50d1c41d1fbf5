"""``flask staff …``: passwords never from argv, emails lowercased, argon2id, every change audited."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEntry
from app.auth.principals import Role
from app.staff.models import StaffAccount, StaffMembership
from tests.factories import make_merchant

PASSWORD = "a long enough passphrase"


def test_create_with_prompt_and_role(app: Flask, db_session: Session) -> None:
    merchant = make_merchant("acme")
    result = app.test_cli_runner().invoke(
        args=[
            "staff",
            "create",
            "--email",
            " Ann@Acme.TEST ",
            "--name",
            "Ann",
            "--merchant",
            "acme",
            "--role",
            "owner",
        ],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    account = db_session.scalar(select(StaffAccount).where(StaffAccount.email == "ann@acme.test"))
    assert account is not None
    assert account.password_hash.startswith("$argon2id$")
    membership = db_session.scalar(select(StaffMembership).where(StaffMembership.staff_id == account.id))
    assert membership is not None and membership.merchant_id == merchant.id and membership.role is Role.OWNER
    entries = db_session.scalars(select(AuditEntry).where(AuditEntry.target_id == str(account.id))).all()
    assert [e.action for e in entries] == ["staff.create", "staff.membership.add"]
    assert all(e.actor_type == "cli" for e in entries)
    assert "argon2" not in str([(e.before, e.after) for e in entries])


def test_create_from_stdin_and_platform_admin(app: Flask, db_session: Session) -> None:
    result = app.test_cli_runner().invoke(
        args=[
            "staff",
            "create",
            "--email",
            "root@hongli.test",
            "--name",
            "Root",
            "--platform-admin",
            "--password-stdin",
        ],
        input=f"{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    account = db_session.scalar(select(StaffAccount).where(StaffAccount.email == "root@hongli.test"))
    assert account is not None and account.is_platform_admin


def test_password_policy_and_duplicates(app: Flask, db_session: Session) -> None:
    runner = app.test_cli_runner()
    short = runner.invoke(
        args=["staff", "create", "--email", "a@acme.test", "--name", "A", "--password-stdin"], input="short\n"
    )
    assert short.exit_code != 0 and "12" in short.output
    ok = runner.invoke(
        args=["staff", "create", "--email", "a@acme.test", "--name", "A", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )
    assert ok.exit_code == 0
    again = runner.invoke(
        args=["staff", "create", "--email", "A@acme.test", "--name", "A", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )
    assert again.exit_code != 0 and "conflict" in again.output
    lonely = runner.invoke(
        args=["staff", "create", "--email", "b@acme.test", "--name", "B", "--merchant", "acme"]
    )
    assert lonely.exit_code != 0 and "--role" in lonely.output


def test_grant_then_list(app: Flask, db_session: Session) -> None:
    make_merchant("acme")
    runner = app.test_cli_runner()
    runner.invoke(
        args=["staff", "create", "--email", "bo@acme.test", "--name", "Bo", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )
    assert (
        runner.invoke(
            args=["staff", "grant", "BO@acme.test", "--merchant", "acme", "--role", "viewer"]
        ).exit_code
        == 0
    )
    assert (
        runner.invoke(
            args=["staff", "grant", "bo@acme.test", "--merchant", "acme", "--role", "finance"]
        ).exit_code
        == 0
    )
    listing = runner.invoke(args=["staff", "list"])
    assert "bo@acme.test" in listing.output and "acme:finance" in listing.output
    unknown = runner.invoke(args=["staff", "grant", "bo@acme.test", "--merchant", "nope", "--role", "viewer"])
    assert unknown.exit_code != 0 and "not_found" in unknown.output


def test_set_password_and_disable(app: Flask, db_session: Session) -> None:
    runner = app.test_cli_runner()
    runner.invoke(
        args=["staff", "create", "--email", "cy@acme.test", "--name", "Cy", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )
    account = db_session.scalar(select(StaffAccount).where(StaffAccount.email == "cy@acme.test"))
    assert account is not None
    old_hash, old_epoch = account.password_hash, account.session_epoch
    reset = runner.invoke(
        args=["staff", "set-password", "cy@acme.test", "--password-stdin"], input="another long passphrase\n"
    )
    assert reset.exit_code == 0, reset.output
    db_session.refresh(account)
    assert account.password_hash != old_hash and account.session_epoch == old_epoch + 1
    assert runner.invoke(args=["staff", "disable", "cy@acme.test"]).exit_code == 0
    db_session.refresh(account)
    assert account.disabled_at is not None
    assert runner.invoke(args=["staff", "disable", "cy@acme.test", "--enable"]).exit_code == 0
    db_session.refresh(account)
    assert account.disabled_at is None
