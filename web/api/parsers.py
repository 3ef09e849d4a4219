"""The API's request parser: every body it cannot read is a 400 problem document, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; JSON nested deeper than the decoder can follow is a ParseError too.

    ``json.loads`` raises RecursionError (not a ValueError, which DRF catches) for input such as
    ``[[[[…]]]]`` a hundred thousand levels deep.
    """

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
