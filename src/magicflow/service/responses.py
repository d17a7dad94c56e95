"""``JSON``: a response body encoded by msgspec, for the hot routes.

A route that returns a pydantic model has it validated and encoded again by FastAPI; for a
document the engine has built already (an execution, a new execution's id) that is most of
the route's CPU. Such routes return ``JSON(document)`` and keep ``response_model`` in their
decorator for the OpenAPI document (the schemathesis suite checks that the two agree).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

_encode = msgspec.json.Encoder().encode


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return _encode(content)
