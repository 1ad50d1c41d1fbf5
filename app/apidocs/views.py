from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from app.extensions import api

bp = Blueprint("apidocs", __name__)
_METHODS = ("get", "post", "put", "patch", "delete")


def _operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for path, item in sorted(spec.get("paths", {}).items()):
        for method in _METHODS:
            op = item.get(method)
            if op:
                rows.append({"path": path, "method": method.upper(), "op": op})
    return rows


@bp.get("/docs")
def api_page() -> str:
    """The API described for people: every operation, its parameters, bodies and responses."""
    spec: dict[str, Any] = api.spec.to_dict()
    return render_template(
        "apidocs.html",
        spec=spec,
        operations=_operations(spec),
        schemas=spec.get("components", {}).get("schemas", {}),
    )
