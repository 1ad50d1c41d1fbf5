"""The blueprint every JSON API view is declared on: flask-smorest's, with argument schemas made once."""

from __future__ import annotations

from typing import Any

import flask_smorest
from marshmallow import Schema


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's blueprint, except that ``arguments`` given a schema class makes its instance once,
    here, instead of webargs making one on every request (tens of microseconds of each call: a pool grab
    measured it in bench/). A schema keeps nothing between loads, so one instance serves every request."""

    def arguments(self, schema: type[Schema] | Schema, **kwargs: Any) -> Any:
        return super().arguments(schema() if isinstance(schema, type) else schema, **kwargs)
