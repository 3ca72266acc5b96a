"""OpenAPI details drf-spectacular cannot infer: the error answers every endpoint can give, and the
SFT hyperparameters as an object with known keys (taken from training.config)."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from curation.services import SFT_RESERVED
from training.config import SFTRunConfig

# The job runner sets these from the job's version, base policy and work directory.


class ErrorSerializer(serializers.Serializer):
    """`detail` says why; a 400 instead maps each field in error to its messages."""

    detail = serializers.CharField(required=False)


class ApiAutoSchema(AutoSchema):
    """Documents 400, 401 and 403 on every operation, and 404 wherever a path names an object or
    a list can be paged past its end, so clients (and schemathesis) know to expect them."""

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        codes = ["400", "401", "403"]
        if "{" in self.path or self._is_list_view():
            codes.append("404")
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(ErrorSerializer, code)
        return responses


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def sft_config_schema() -> dict[str, Any]:
    """The overridable SFT hyperparameters, with their help texts and choices."""
    hints = typing.get_type_hints(SFTRunConfig)
    properties = {}
    for field in dataclasses.fields(SFTRunConfig):
        if field.name in SFT_RESERVED:
            continue
        tp, nullable = hints[field.name], False
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            (tp,) = (a for a in typing.get_args(tp) if a is not type(None))
            nullable = True
        prop: dict[str, Any] = {"type": _JSON_TYPES[tp], "description": field.metadata["help"]}
        if nullable:
            prop["nullable"] = True
        if choices := field.metadata.get("choices"):
            prop["enum"] = list(choices)
        properties[field.name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}
