"""OpenAPI post-processing: every operation documents its RFC 7807 problem responses."""

from __future__ import annotations

from typing import Any

ERROR_CODES = {
    "400": "bad request (field errors in `errors`)",
    "401": "not authenticated",
    "403": "not allowed for your roles",
    "404": "not found (or not visible to you)",
    "405": "method not allowed",
    "406": "not acceptable",
    "409": "the object's state forbids it",
    "410": "gone (a one-time download was taken)",
    "415": "unsupported media type",
    "422": "policy violation",
    "429": "throttled (see Retry-After)",
    "503": "key backend or configuration unavailable",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 7807 problem document",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message", "code"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "code": {"type": "string"},
                },
            },
        },
    },
}


def add_problem_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: add the Problem schema and the error responses."""
    components = result.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in result.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_CODES.items():
                responses.setdefault(code, {"description": description, "content": content})
    return result
