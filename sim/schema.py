"""The validation layer every input surface goes through (pydantic v2).

Every file or mapping a user hands accsim (scenarios, device and cluster
specs, sweep files, trace scalars, CLI and Python API arguments) is read with
``load_yaml`` (bounded: size, nesting depth, alias expansion) and checked
against a ``StrictModel`` with ``validate``, which turns pydantic's errors into
one ``AccsimError`` line naming the file, the key path and what was expected.

Field types carry their units and bounds, so a model states its schema:

``Bool``      a real YAML boolean (``"false"`` as a string is an error, never true)
``Int``       an integer within int64 (``2.0`` and ``"2"`` accepted; ``2.5`` not)
``Float``     a finite number (PyYAML reads ``312e12`` as a string: accepted)
``Bytes``     a byte count: ``4096``, ``64MiB``, ``80GB`` (int, < 2^62)
``Rate``      bytes per second: ``2.039e12``, ``3TB/s``, ``400Gb/s`` (> 0)
``Seconds``   a time: ``1e-6``, ``500ns``, ``2ms`` (>= 0)
``Hertz``     a clock: ``1.41e9``, ``1410MHz`` (> 0)

plus ``Positive*`` / ``NonNegative*`` variants, ``Fraction`` (0, 1],
``int_range(low, high)`` (a bounded integer), ``choice(...)`` (one of a few
words, case-insensitive), ``Name`` (a short non-empty label) and ``Text``.

Python data handed to the API (``sim.run({...})``, ``--set`` values) goes
through ``check_structure``, the same depth and size limits as YAML files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Mapping, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic_core import PydanticCustomError

from sim.errors import AccsimError, ScenarioError
from sim.units import parse_bytes, parse_frequency, parse_rate, parse_seconds

INT64_MAX = 2**63 - 1
MAX_YAML_BYTES = 16 * 2**20      # a scenario or spec larger than this is not hand-written
MAX_YAML_DEPTH = 64              # nesting levels
MAX_YAML_NODES = 1_000_000       # nodes after alias expansion (stops "billion laughs")
MAX_MESSAGE = 300                # characters of an error line

Model = TypeVar("Model", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every input model: unknown keys are errors, instances are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- field types


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError("accsim", message)


def _reject_bool(value: Any, expected: str) -> None:
    if isinstance(value, bool):
        raise _custom(f"expected {expected}, got {value!r}")


def _to_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _custom(f"expected true or false, got {value!r}")
    return value


def _to_int(value: Any) -> int:
    _reject_bool(value, "an integer")
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise _custom(f"expected an integer, got {value!r}") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise _custom(f"expected an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise _custom(f"expected an integer, got {value!r}")
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _custom(f"expected an integer within int64, got {value!r}")
    return value


def _to_float(value: Any) -> float:
    _reject_bool(value, "a number")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise _custom(f"expected a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise _custom(f"expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise _custom(f"expected a finite number, got {value!r}")
    return number


def _unit_parser(parse):
    def convert(value: Any):
        try:
            return parse(value, "")
        except ValueError as exc:
            raise _custom(str(exc)) from None
    return convert


def _at_least(minimum: float, strict: bool):
    def check(value):
        if value < minimum or (strict and value == minimum):
            if minimum == 0:
                wanted = "a positive value" if strict else "a non-negative value"
            else:
                wanted = f"more than {minimum}" if strict else f"at least {minimum}"
            raise _custom(f"expected {wanted}, got {value!r}")
        return value
    return check


def _fraction(value: float) -> float:
    if not 0 < value <= 1:
        raise _custom(f"expected a fraction in (0, 1], got {value!r}")
    return value


def _at_most(maximum: float):
    def check(value):
        if value > maximum:
            raise _custom(f"expected at most {maximum}, got {value!r}")
        return value
    return check


def int_range(low: int, high: int):
    """An integer in [low, high] (a bound that keeps work and memory finite)."""
    return Annotated[int, BeforeValidator(_to_int), AfterValidator(_at_least(low, False)),
                     AfterValidator(_at_most(high))]


def choice(*options: str):
    """One of ``options``, compared case-insensitively; stored lower-case."""
    allowed = tuple(o.lower() for o in options)

    def check(value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        raise _custom(f"expected one of {', '.join(allowed)}, got {_short_repr(value)}")
    return Annotated[str, BeforeValidator(check)]


MAX_NAME = 200        # characters of a name shown in outputs
MAX_TEXT = 10_000     # characters of free text (descriptions, expressions)


def _to_text(limit: int, allow_empty: bool, single_line: bool):
    def convert(value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise _custom(f"expected a string, got {_short_repr(value)}")
        text = str(value)
        if not text.strip() and not allow_empty:
            raise _custom("expected a non-empty string")
        if len(text) > limit:
            raise _custom(f"expected at most {limit} characters, got {len(text)}")
        if single_line and any(ch in text for ch in "\x00\r\n"):
            raise _custom(f"expected a name on one line, got {_short_repr(text)}")
        return text
    return convert


Bool = Annotated[bool, BeforeValidator(_to_bool)]
Int = Annotated[int, BeforeValidator(_to_int)]
PositiveInt = Annotated[int, BeforeValidator(_to_int), AfterValidator(_at_least(0, True))]
NonNegativeInt = Annotated[int, BeforeValidator(_to_int), AfterValidator(_at_least(0, False))]
Float = Annotated[float, BeforeValidator(_to_float)]
PositiveFloat = Annotated[float, BeforeValidator(_to_float), AfterValidator(_at_least(0, True))]
NonNegativeFloat = Annotated[float, BeforeValidator(_to_float), AfterValidator(_at_least(0, False))]
Fraction = Annotated[float, BeforeValidator(_to_float), AfterValidator(_fraction)]
Bytes = Annotated[int, BeforeValidator(_unit_parser(parse_bytes))]
PositiveBytes = Annotated[int, BeforeValidator(_unit_parser(parse_bytes)), AfterValidator(_at_least(0, True))]
Rate = Annotated[float, BeforeValidator(_unit_parser(parse_rate))]
Seconds = Annotated[float, BeforeValidator(_unit_parser(parse_seconds))]
Hertz = Annotated[float, BeforeValidator(_unit_parser(parse_frequency))]
Name = Annotated[str, BeforeValidator(_to_text(MAX_NAME, False, True))]
Text = Annotated[str, BeforeValidator(_to_text(MAX_TEXT, True, False))]


# ---------------------------------------------------------------- errors


def _location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif str(part).startswith(("function-", "constrained-")):
            continue        # pydantic's names for validator steps, not user keys
        else:
            text += f".{part}" if text else str(part)
    return text


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_line(exc: ValidationError, where: str) -> str:
    """One line for the first error of a pydantic ValidationError:
    ``WHERE.key.path: what was expected``."""
    first = exc.errors(include_url=False)[0]
    loc = _location(tuple(first.get("loc", ())))
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        message = "unknown key"
        parent = loc.rsplit(".", 1)[0] if "." in loc else ""
        message += f" {loc.rsplit('.', 1)[-1]!r}"
        loc = parent
    elif kind == "missing":
        message = f"missing key {loc.rsplit('.', 1)[-1]!r}"
        loc = loc.rsplit(".", 1)[0] if "." in loc else ""
    elif kind == "accsim":
        message = first["msg"]
    else:
        expected = _EXPECTED.get(kind)
        if expected is None and kind == "literal_error":
            expected = "one of " + first["msg"].removeprefix("Input should be ")
        message = (f"expected {expected}" if expected else first["msg"]) + \
            f", got {_short_repr(first.get('input'))}"
    return one_line(f"{join_location(where, loc)}: {message}")


_EXPECTED = {"list_type": "a list", "dict_type": "a mapping", "string_type": "a string",
             "model_type": "a mapping", "tuple_type": "a list", "too_short": None}


def join_location(where: str, key_path: str) -> str:
    """``file.yaml: key.path`` for a file, ``scope.key.path`` for a key scope."""
    if not where or not key_path:
        return where or key_path
    is_file = Path(where).suffix.lower() in (".yaml", ".yml", ".json", ".jsonl", ".arrow", ".csv")
    return f"{where}: {key_path}" if is_file else f"{where}.{key_path}"


def validate(model: type[Model], raw: Any, where: str, error: type[AccsimError] = ScenarioError) -> Model:
    """``model`` validated from ``raw``, or ``error`` with one line naming
    ``where`` (a file or key path) and the offending key."""
    if not isinstance(raw, Mapping):
        raise error(one_line(f"{where}: expected a mapping, got {type(raw).__name__}"))
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(error_line(exc, where)) from None
    except RecursionError:
        raise error(f"{where}: nested too deeply") from None


def check_structure(value: Any, where: str, error: type[AccsimError] = ScenarioError) -> Any:
    """``value`` if it is plain data (mappings with string keys, lists, scalars)
    within the YAML limits (depth, node count); else one ``error`` line.
    For data that did not come through ``load_yaml``: API mappings, ``--set``."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    nodes = 0
    while stack:
        item, depth, path = stack.pop()
        nodes += 1
        if depth > MAX_YAML_DEPTH:
            raise error(one_line(f"{join_location(where, path)}: nested deeper than {MAX_YAML_DEPTH} levels"))
        if nodes > MAX_YAML_NODES:
            raise error(one_line(f"{where}: more than {MAX_YAML_NODES} values"))
        if isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise error(one_line(f"{join_location(where, path)}: keys must be strings, "
                                         f"got {_short_repr(key)}"))
                stack.append((child, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(item, (list, tuple)):
            for index, child in enumerate(item):
                stack.append((child, depth + 1, f"{path}[{index}]"))
        elif isinstance(item, float) and not math.isfinite(item):
            raise error(one_line(f"{join_location(where, path)}: expected a finite number, got {item!r}"))
        elif item is not None and not isinstance(item, (str, int, float, bool)):
            raise error(one_line(f"{join_location(where, path)}: expected plain data (a mapping, list, "
                                 f"string or number), got {type(item).__name__}"))
    return value


# ---------------------------------------------------------------- YAML


class _DepthLimit:
    """A composer with a nesting-depth limit (mixed in before PyYAML's Composer)
    that counts the nodes it composes and notes any anchor or alias: without
    one, the document's size after alias expansion is that count."""

    _depth = 0
    _nodes = 0
    _aliased = False

    def compose_node(self, parent, index):
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _YamlLimit(f"nested deeper than {MAX_YAML_DEPTH} levels")
        self._nodes += 1
        if self.peek_event().anchor is not None:
            self._aliased = True
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _BoundedPyLoader(_DepthLimit, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, depth-limited (when libyaml is missing)."""


if yaml.__with_libyaml__:
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.cyaml import CParser
    from yaml.resolver import Resolver

    class _BoundedLoader(_DepthLimit, Composer, CParser, SafeConstructor, Resolver):
        """libyaml's scanner and parser (C; the shipped spec files parse about 6x
        faster than in pure Python) under PyYAML's own composer, so the depth
        limit holds while composing; PyYAML's safe constructor and resolver, as
        ``yaml.SafeLoader``. libyaml keeps its parser state on the heap (no
        recursion), so deep nesting reaches the limit rather than the C stack."""

        def __init__(self, stream):
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)
else:
    _BoundedLoader = _BoundedPyLoader


class _YamlLimit(Exception):
    pass


def _expanded_nodes(root: yaml.Node) -> int:
    """Nodes of the document with every alias expanded, without expanding it:
    each node's size is computed once (memo by identity); a node reached again
    while being sized is a recursive alias."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    visiting: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            visiting.discard(key)
            children = _children(node)
            total = 1 + sum(sizes[id(c)] for c in children)
            sizes[key] = total
            if total > MAX_YAML_NODES:
                raise _YamlLimit(f"expands to more than {MAX_YAML_NODES} nodes (alias expansion)")
            continue
        if key in sizes:
            continue
        if key in visiting:
            raise _YamlLimit("an alias refers to a node that contains it")
        visiting.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _loader(text: str):
    try:
        return _BoundedLoader(text)
    except UnicodeEncodeError:      # a lone surrogate: libyaml reads UTF-8; PyYAML's reader names it
        return _BoundedPyLoader(text)


def parse_yaml_text(text: str, where: str, error: type[AccsimError] = ScenarioError) -> Any:
    """Parse YAML text within the size, depth and alias-expansion limits."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{where}: larger than {MAX_YAML_BYTES // 2**20} MiB; not a hand-written file")
    try:
        loader = _loader(text)
    except yaml.YAMLError as exc:       # the reader refuses control characters up front
        raise error(one_line(f"{where}: invalid YAML ({exc})")) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if loader._aliased or loader._nodes > MAX_YAML_NODES:
            _expanded_nodes(node)
        return loader.construct_document(node)
    except _YamlLimit as exc:
        raise error(f"{where}: {exc}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        if problem == "exceeded maximum nesting depth":     # libyaml's own limit (1,000 flow levels)
            raise error(f"{where}: nested deeper than {MAX_YAML_DEPTH} levels") from None
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise error(one_line(f"{where}{line}: invalid YAML ({problem})")) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise error(one_line(f"{where}: invalid YAML ({type(exc).__name__}: {exc})")) from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path, error: type[AccsimError] = ScenarioError) -> Any:
    """Read and parse a YAML file; every failure is one ``error`` line naming it."""
    path = Path(path)
    try:
        if path.is_dir():
            raise error(f"{path}: is a directory, expected a YAML file")
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise error(f"{path}: larger than {MAX_YAML_BYTES // 2**20} MiB; not a hand-written file")
        data = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_yaml_text(text, str(path), error)
