"""Flask extensions, created unbound here and initialised in :func:`app.create_app`."""

from __future__ import annotations

from flask_migrate import Migrate
from flask_smorest import Api
from flask_sqlalchemy import SQLAlchemy

from app.core.db import Base
from app.core.error_schemas import ErrorEnvelopeSchema


class HongliApi(Api):
    """flask-smorest's Api declaring our error envelope (rendered by :mod:`app.core.http`) as the
    body of every error response in ``/openapi.json``, instead of its own ``{code, status, errors}``."""

    ERROR_SCHEMA = ErrorEnvelopeSchema


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
api = HongliApi()
