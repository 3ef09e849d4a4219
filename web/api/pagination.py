"""Cursor pagination by primary key: a keyset ``WHERE id < cursor ORDER BY id DESC LIMIT n``.

The id is unique and indexed, so it is its own tiebreaker and the page query stays an index
scan however many rows there are (no OFFSET, no COUNT).
"""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class IdCursorPagination(CursorPagination):
    """Newest first; ``?page_size=`` up to 500."""

    ordering = ("-id",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
