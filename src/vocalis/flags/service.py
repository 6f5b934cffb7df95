"""Evaluating flags: OpenFeature over our registry, deployment settings and org overrides.

Precedence, highest first: an organisation override, a deployment override
(`VOCALIS_FLAGS`), the registry default. Later work reads every flag through
`flag_value`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider import AbstractProvider, Metadata

from vocalis.flags.registry import FLAGS, Flag

T = TypeVar("T", bool, int, float, str)


class RegistryFlagProvider(AbstractProvider):
    """OpenFeature provider resolving flags from the registry and overrides."""

    def __init__(self, deployment: Mapping[str, Any] | None = None) -> None:
        self.deployment: dict[str, Any] = dict(deployment or {})
        self.org_overrides: dict[tuple[str, str], Any] = {}
        # Overrides by the database they were loaded from: a process serving several
        # databases (the test suite runs many apps in one process) keeps each one's rows.
        self.sources: dict[str, dict[tuple[str, str], Any]] = {}

    def get_metadata(self) -> Metadata:
        return Metadata(name="vocalis-registry")

    def get_provider_hooks(self) -> list[Any]:
        return []

    def _resolve(
        self, key: str, default: Any, ctx: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        flag = FLAGS.get(key)
        if flag is None:
            return FlagResolutionDetails(
                default, error_code=ErrorCode.FLAG_NOT_FOUND, reason=Reason.ERROR
            )
        org_id = ctx.targeting_key if ctx else None
        if org_id and (org_id, key) in self.org_overrides:
            return FlagResolutionDetails(
                self.org_overrides[(org_id, key)], reason=Reason.TARGETING_MATCH
            )
        if key in self.deployment:
            return FlagResolutionDetails(flag.kind(self.deployment[key]), reason=Reason.STATIC)
        return FlagResolutionDetails(flag.default, reason=Reason.DEFAULT)

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context)

    def resolve_object_details(
        self, flag_key: str, default_value: Any, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[Any]:
        return self._resolve(flag_key, default_value, evaluation_context)


_provider = RegistryFlagProvider()
api.set_provider(_provider)


def configure_flags(deployment: Mapping[str, Any]) -> RegistryFlagProvider:
    """Install deployment overrides (from settings); unknown keys are rejected."""
    unknown = sorted(set(deployment) - set(FLAGS))
    if unknown:
        raise ValueError(f"unknown feature flags in VOCALIS_FLAGS: {', '.join(unknown)}")
    _provider.deployment = dict(deployment)
    return _provider


def set_org_overrides(overrides: Sequence[tuple[str, str, Any]], source: str = "") -> None:
    """Replace the organisation overrides loaded from `source` with (org_id, key, value) triples.

    `source` names the database the rows came from; the overrides of other sources stay
    (organisation ids are unique, so the sets never overlap).
    """
    _provider.sources[source] = {(org, key): value for org, key, value in overrides}
    merged: dict[tuple[str, str], Any] = {}
    for rows in _provider.sources.values():
        merged.update(rows)
    _provider.org_overrides = merged


def _is_kind(value: object, kind: type) -> bool:
    return isinstance(value, kind) and (kind is bool) == isinstance(value, bool)


def flag_value(flag: Flag[T], org_id: str | None = None) -> T:
    """The value of a flag, for an organisation when given; the one way to read a flag."""
    value: Any
    if (
        api.provider_registry.get_default_provider() is _provider
        and not api.get_hooks()
        and not api.get_evaluation_context().attributes
    ):
        # Our own in-memory provider and no hooks: resolve directly, without the client's
        # per-call machinery or even an evaluation context (it runs on every request: the
        # rate-limit flag); the same value `_resolve` gives.
        key = flag.key
        if org_id and (org_id, key) in _provider.org_overrides:
            value = _provider.org_overrides[(org_id, key)]
        elif key in _provider.deployment:
            value = flag.kind(_provider.deployment[key])
        else:
            value = flag.default
        if key in FLAGS and _is_kind(value, flag.kind):
            return cast(T, value)
    ctx = EvaluationContext(targeting_key=org_id) if org_id else None
    client = api.get_client("vocalis")
    if flag.kind is bool:
        value = client.get_boolean_value(flag.key, flag.default, ctx)  # type: ignore[arg-type]
    elif flag.kind is int:
        value = client.get_integer_value(flag.key, flag.default, ctx)  # type: ignore[arg-type]
    elif flag.kind is float:
        value = client.get_float_value(flag.key, flag.default, ctx)  # type: ignore[arg-type]
    else:
        value = client.get_string_value(flag.key, flag.default, ctx)  # type: ignore[arg-type]
    return value
