"""The API's JSON parser: DRF's, refusing text that holds the NUL character.

PostgreSQL cannot store NUL in text or jsonb, so no field can legitimately carry one; refused at the door, a
NUL can reach neither a query (a database error, once a 500) nor a stored answer (the replay of an
Idempotency-Key, which echoes rejected records' ids) nor a log line.
"""

from __future__ import annotations

import io
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

NUL_MESSAGE = "Text may not contain the NUL character (\\u0000)."


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        data = super().parse(io.BytesIO(raw), media_type, parser_context)
        # JSON can only carry NUL escaped; look through the data only when the escape is there at all.
        if b"\\u0000" in raw and _holds_nul(data):
            raise ParseError(NUL_MESSAGE)
        return data
