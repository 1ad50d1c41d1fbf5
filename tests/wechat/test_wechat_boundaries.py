"""Package boundaries: ``wechat`` never imports ``app`` or ``jobs`` (jobs → app → wechat)."""

from __future__ import annotations

import ast
from pathlib import Path

import wechat


def test_wechat_client_modules_do_not_import_app_or_jobs() -> None:
    root = Path(wechat.__file__).parent
    offenders: list[str] = []
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in {"app", "jobs"}]
    assert offenders == []
