"""The object and array keywords of the JSON Schema validator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentfsm.schema._checks import (
    SchemaDefinitionError,
    Style,
    Validator,
    accept,
    child,
    count,
    json_key,
    regex,
)

__all__ = ["ContainerKeywords"]


class ContainerKeywords:
    """Compiles the keywords of objects and arrays; mixed into the validator's compiler."""

    _style: Style
    _lint: bool

    def compile(
        self,
        schema: Any,
        where: str,
        extra_required: tuple[str, ...] = (),
        *,
        root: bool = False,
    ) -> Validator:
        raise NotImplementedError  # pragma: no cover - the compiler defines it

    # --- objects -------------------------------------------------------------------------------

    def _object(
        self, schema: Mapping[str, Any], where: str, extra_required: tuple[str, ...]
    ) -> Validator:
        raw_properties = schema.get("properties", {})
        if not isinstance(raw_properties, Mapping):
            raise SchemaDefinitionError(f"{where}.properties must be a mapping of names to schemas")
        properties = {
            name: self.compile(sub, f"{where}.properties.{name}")
            for name, sub in raw_properties.items()
        }
        declared_required = schema.get("required", [])
        if not isinstance(declared_required, list) or not all(
            isinstance(name, str) for name in declared_required
        ):
            raise SchemaDefinitionError(f"{where}.required must be a list of property names")
        if self._lint and "properties" in schema:
            for name in declared_required:
                if name not in properties:
                    raise SchemaDefinitionError(
                        f"{where}.required lists {name!r}, which is not in properties"
                    )
        required = tuple(dict.fromkeys([*declared_required, *extra_required]))
        raw_patterns = schema.get("patternProperties", {})
        if not isinstance(raw_patterns, Mapping):
            raise SchemaDefinitionError(f"{where}.patternProperties must be a mapping")
        patterns = tuple(
            (
                regex(pattern, f"{where}.patternProperties"),
                self.compile(sub, f"{where}.patternProperties.{pattern}"),
            )
            for pattern, sub in raw_patterns.items()
        )
        dependent = schema.get("dependentRequired", {})
        if not isinstance(dependent, Mapping) or not all(
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            for names in dependent.values()
        ):
            raise SchemaDefinitionError(
                f"{where}.dependentRequired must map names to lists of names"
            )
        additional_schema = schema.get("additionalProperties", True)
        closed = additional_schema is False
        additional: Validator | None = (
            None if closed else self.compile(additional_schema, f"{where}.additionalProperties")
        )
        if additional is accept:
            additional = None
        accepted = list(properties)
        style = self._style

        def check_object(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, Mapping):
                return
            for name in required:
                if name not in value:
                    errors.append(style.missing(path, name))
            for trigger, needed in dependent.items():
                if trigger in value:
                    for name in needed:
                        if name not in value:
                            errors.append(style.missing(path, name, f" (needed with '{trigger}')"))
            for key, item in value.items():
                check = properties.get(key)
                matched = False
                if check is not None:
                    check(item, child(path, key), errors)
                    matched = True
                for compiled, check_pattern in patterns:
                    if compiled.search(key):
                        check_pattern(item, child(path, key), errors)
                        matched = True
                if matched:
                    continue
                if closed:
                    errors.append(style.unexpected(path, key, accepted))
                elif additional is not None:
                    additional(item, child(path, key), errors)

        return check_object

    def _property_count(self, schema: Mapping[str, Any], where: str) -> Validator:
        low = count(schema, "minProperties", where)
        high = count(schema, "maxProperties", where)
        style = self._style

        def check_count(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, Mapping):
                return
            count = len(value)
            if low is not None and count < low:
                errors.append(
                    f"{style.subject(path)} must have at least {low} properties, got {count}"
                )
            if high is not None and count > high:
                errors.append(
                    f"{style.subject(path)} must have at most {high} properties, got {count}"
                )

        return check_count

    def _property_names(self, raw: Any, where: str) -> Validator:
        check_name = self.compile(raw, f"{where}.propertyNames")
        style = self._style

        def check_names(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, Mapping):
                return
            for key in value:
                found: list[str] = []
                check_name(key, style.root, found)
                if found:
                    errors.append(f"{style.subject(path)} has a property name not allowed: {key!r}")

        return check_names

    def _dependent_schemas(self, raw: Any, where: str) -> Validator:
        if not isinstance(raw, Mapping):
            raise SchemaDefinitionError(f"{where}.dependentSchemas must be a mapping")
        compiled = tuple(
            (name, self.compile(sub, f"{where}.dependentSchemas.{name}"))
            for name, sub in raw.items()
        )

        def check_dependent(value: Any, path: str, errors: list[str]) -> None:
            if isinstance(value, Mapping):
                for name, check in compiled:
                    if name in value:
                        check(value, path, errors)

        return check_dependent

    # --- arrays --------------------------------------------------------------------------------

    def _array(self, schema: Mapping[str, Any], where: str) -> Validator:
        raw_items = schema.get("items", True)
        raw_prefix = schema.get("prefixItems", [])
        if isinstance(raw_items, list):  # the draft-4 tuple form
            raw_prefix, raw_items = raw_items, schema.get("additionalItems", True)
        if not isinstance(raw_prefix, list):
            raise SchemaDefinitionError(f"{where}.prefixItems must be a list of schemas")
        prefix = tuple(
            self.compile(sub, f"{where}.prefixItems[{i}]") for i, sub in enumerate(raw_prefix)
        )
        items = self.compile(raw_items, f"{where}.items")
        min_items = count(schema, "minItems", where)
        max_items = count(schema, "maxItems", where)
        unique = schema.get("uniqueItems", False)
        if not isinstance(unique, bool):
            raise SchemaDefinitionError(f"{where}.uniqueItems must be true or false")
        style = self._style

        def check_array(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, (list, tuple)):
                return
            count = len(value)
            if min_items is not None and count < min_items:
                errors.append(
                    f"{style.subject(path)} must have at least {min_items} item(s), got {count}"
                )
            if max_items is not None and count > max_items:
                errors.append(
                    f"{style.subject(path)} must have at most {max_items} item(s), got {count}"
                )
            for index, item in enumerate(value):
                check = prefix[index] if index < len(prefix) else items
                if check is not accept:
                    check(item, f"{path}[{index}]", errors)
            if unique:
                seen: dict[Any, int] = {}
                for index, item in enumerate(value):
                    first = seen.setdefault(json_key(item), index)
                    if first != index:
                        errors.append(
                            f"{style.subject(path)} must not repeat items: items {first} and "
                            f"{index} are equal"
                        )
                        break

        return check_array

    def _contains(self, schema: Mapping[str, Any], where: str) -> Validator:
        check_item = self.compile(schema["contains"], f"{where}.contains")
        low = count(schema, "minContains", where)
        low = 1 if low is None else low
        high = count(schema, "maxContains", where)
        style = self._style

        def check_contains(value: Any, path: str, errors: list[str]) -> None:
            if not isinstance(value, (list, tuple)):
                return
            matches = 0
            for item in value:
                found: list[str] = []
                check_item(item, path, found)
                matches += not found
            if matches < low:
                errors.append(
                    f"{style.subject(path)} must contain at least {low} item(s) matching "
                    f"'contains', got {matches}"
                )
            if high is not None and matches > high:
                errors.append(
                    f"{style.subject(path)} must contain at most {high} item(s) matching "
                    f"'contains', got {matches}"
                )

        return check_contains
