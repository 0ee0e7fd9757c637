"""The sweep ``where:`` filter: a small expression language, never ``eval``.

An expression is parsed with Python's ``ast`` module and every node is
checked against a whitelist before anything is evaluated; evaluation walks
the tree itself. Allowed:

- literals: numbers, strings, ``true``/``false``/``True``/``False``, ``null``/``None``,
  lists and tuples of literals (for ``in``);
- axis names, dotted as in the sweep (``parallel.pp``);
- arithmetic ``+ - * / // %`` and ``**`` with an exponent of at most 64 in
  absolute value, on numbers only; results beyond 2^1023 in magnitude are
  an error (no unbounded integers, no huge strings);
- comparisons ``== != < <= > >=`` (chained too), ``in``, ``not in``;
- ``and``, ``or``, ``not``, ``x if c else y``;
- the functions ``min``, ``max``, ``abs``.

Anything else (attribute access beyond axis names, subscripts, calls to other
names, lambdas, comprehensions) is refused when the sweep is loaded, with the
offending text. ``9**9**9 > 0`` is refused as an exponent beyond the bound.
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Mapping

MAX_EXPRESSION = 2000        # characters
MAX_EXPONENT = 64
MAX_MAGNITUDE = 2**1023      # of any intermediate number
MAX_NODES = 500

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {"min": min, "max": max, "abs": abs}
_CONSTANTS = {"true": True, "false": False, "True": True, "False": False, "null": None, "None": None}


class ExpressionError(ValueError):
    """An expression that is not in the language, or fails on a point."""


@dataclass(frozen=True)
class Expression:
    """A checked ``where:`` expression; ``evaluate(point)`` is its value."""

    text: str
    tree: ast.Expression

    def evaluate(self, point: Mapping[str, Any]) -> Any:
        return _Evaluator(point).visit(self.tree.body)

    def names(self) -> set[str]:
        """The dotted axis names it reads (whole chains: ``parallel.pp``)."""
        found, stack = set(), [self.tree.body]
        while stack:
            node = stack.pop()
            name = _dotted(node)
            if name is not None:
                if name not in _CONSTANTS:
                    found.add(name)
                continue
            if isinstance(node, ast.Call):
                stack.extend(node.args)     # the function's own name is not an axis
                continue
            stack.extend(ast.iter_child_nodes(node))
        return found


def parse(text: str, axes: set[str] | None = None) -> Expression:
    """Parse and check ``text``; with ``axes``, every name must be one of them."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("expected a non-empty expression")
    if len(text) > MAX_EXPRESSION:
        raise ExpressionError(f"longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression ({exc.msg})") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("nested too deeply") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"more than {MAX_NODES} terms")
    for node in nodes:
        _check(node, text)
    expression = Expression(text, tree)
    if axes is not None:
        unknown = sorted(expression.names() - axes)
        if unknown:
            raise ExpressionError(f"{unknown[0]!r} is not an axis of the sweep; axes: {sorted(axes)}")
    return expression


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name or a chain of Attributes on a Name, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
            ast.BinOp, ast.Compare, ast.IfExp, ast.Constant, ast.List, ast.Tuple, ast.Load,
            ast.Name, ast.Attribute, ast.Call) + tuple(_BINARY) + tuple(_COMPARE)


def _check(node: ast.AST, text: str) -> None:
    if not isinstance(node, _ALLOWED):
        shown = ast.get_source_segment(text.strip(), node) or type(node).__name__
        raise ExpressionError(f"{shown!r} is not allowed (comparisons, arithmetic, and/or/not, in, "
                              f"axis names, literals and min/max/abs only)")
    if isinstance(node, ast.Attribute) and _dotted(node) is None:
        raise ExpressionError(f"{ast.get_source_segment(text.strip(), node)!r}: only axis names may be dotted")
    if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
        raise ExpressionError(f"{node.value!r} is not a number, string or boolean")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            shown = ast.get_source_segment(text.strip(), node)
            raise ExpressionError(f"{shown!r}: the only functions are {sorted(_FUNCTIONS)}")


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExpressionError(f"{what} needs numbers, got {value!r}")
    return value


def _bounded(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError(f"a non-finite number ({value})")
        if abs(value) > MAX_MAGNITUDE:
            raise ExpressionError("a number larger than 2^1023")
    return value


class _Evaluator:
    def __init__(self, point: Mapping[str, Any]):
        self.point = point

    def visit(self, node: ast.AST) -> Any:
        name = _dotted(node)
        if name is not None:
            if name in _CONSTANTS:
                return _CONSTANTS[name]
            if name not in self.point:
                raise ExpressionError(f"this point has no value for {name!r}")
            return self.point[name]
        method = getattr(self, f"_{type(node).__name__}")
        return method(node)

    def _Constant(self, node: ast.Constant) -> Any:
        return _bounded(node.value)

    def _List(self, node: ast.List) -> list:
        return [self.visit(x) for x in node.elts]

    _Tuple = _List

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        if isinstance(node.op, ast.And):
            value: Any = True
            for item in node.values:
                value = self.visit(item)
                if not value:
                    return value
            return value
        value = False
        for item in node.values:
            value = self.visit(item)
            if value:
                return value
        return value

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        value = _number(value, "unary minus" if isinstance(node.op, ast.USub) else "unary plus")
        return -value if isinstance(node.op, ast.USub) else +value

    def _BinOp(self, node: ast.BinOp) -> Any:
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                  ast.Mod: "%", ast.Pow: "**"}[type(node.op)]
        left = _number(self.visit(node.left), f"'{symbol}'")
        right = _number(self.visit(node.right), f"'{symbol}'")
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ExpressionError(f"an exponent of {right!r}; at most {MAX_EXPONENT}")
            if left == 0 and right < 0:
                raise ExpressionError("zero to a negative power")
            if abs(right) > 1 and abs(left) > 1 and right * math.log2(abs(left)) > 1023:
                raise ExpressionError("a number larger than 2^1023")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ExpressionError("division by zero")
        try:
            result = _BINARY[type(node.op)](left, right)
        except (OverflowError, ValueError, ZeroDivisionError) as exc:
            raise ExpressionError(f"'{symbol}' failed ({exc})") from None
        if isinstance(result, complex):
            raise ExpressionError("a complex number (a negative number to a fractional power)")
        return _bounded(result)

    def _Compare(self, node: ast.Compare) -> bool:
        left = self.visit(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.visit(comparator)
            if isinstance(op, (ast.In, ast.NotIn)) and not isinstance(right, (list, tuple, str)):
                raise ExpressionError(f"'in' needs a list or a string on its right, got {right!r}")
            try:
                outcome = _COMPARE[type(op)](left, right)
            except TypeError:
                raise ExpressionError(f"cannot compare {left!r} with {right!r}") from None
            if not outcome:
                return False
            left = right
        return True

    def _IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def _Call(self, node: ast.Call) -> Any:
        args = [self.visit(a) for a in node.args]
        function = node.func.id  # type: ignore[attr-defined]
        if function == "abs":
            if len(args) != 1:
                raise ExpressionError("abs() needs one number")
            return abs(_number(args[0], "abs()"))
        if len(args) == 1 and isinstance(args[0], list):
            args = args[0]
        if len(args) < 2 and not (len(args) == 1 and isinstance(node.args[0], (ast.List, ast.Tuple))):
            raise ExpressionError(f"{function}() needs two or more numbers, or a list of them")
        for arg in args:
            _number(arg, f"{function}()")
        return _FUNCTIONS[function](args)
