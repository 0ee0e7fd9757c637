"""The validation layer: unit-aware field types, one-line errors, bounded YAML."""

from typing import Literal

import pytest
from hypothesis import given, strategies as st

from sim.errors import ScenarioError, SpecError
from sim.schema import (Bool, Bytes, Float, Hertz, PositiveInt, Rate, Seconds, StrictModel,
                        load_yaml, parse_yaml_text, validate)
from sim.units import parse_bytes, parse_frequency, parse_rate, parse_seconds


class Tier(StrictModel):
    name: str
    capacity_bytes: Bytes
    bandwidth_bytes_per_s: Rate
    latency_s: Seconds = 0.0
    clock_hz: Hertz = 1e9
    pinned: Bool = False
    count: PositiveInt = 1
    efficiency: Float = 1.0
    mode: Literal["a", "b"] = "a"


def _error(raw, where="spec.yaml"):
    with pytest.raises(SpecError) as info:
        validate(Tier, raw, where, SpecError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_units_parse_to_si():
    assert parse_rate("50GB/s") == 50e9
    assert parse_rate("400Gb/s") == parse_rate("400Gbps") == 50e9
    assert parse_rate("1KiB/s") == 1024
    assert parse_seconds("500ns") == 5e-7 and parse_seconds("2ms") == 2e-3
    assert parse_frequency("1.41GHz") == 1.41e9
    assert parse_bytes("80GB") == 80_000_000_000 and parse_bytes("1GiB") == 2**30


def test_fields_take_units_and_numbers_written_as_text():
    tier = validate(Tier, {"name": "hbm", "capacity_bytes": "80GB", "bandwidth_bytes_per_s": "3TB/s",
                           "latency_s": "1us", "clock_hz": "1410MHz", "efficiency": "8e-1"},
                    "spec.yaml", SpecError)
    assert (tier.capacity_bytes, tier.bandwidth_bytes_per_s) == (80_000_000_000, 3e12)
    assert (tier.latency_s, tier.clock_hz, tier.efficiency) == (1e-6, 1.41e9, 0.8)


@pytest.mark.parametrize("raw, expected", [
    ({"pinned": "false"}, "spec.yaml: pinned: expected true or false, got 'false'"),
    ({"count": 0}, "spec.yaml: count: expected a positive value, got 0"),
    ({"count": 2**64}, "spec.yaml: count: expected an integer within int64"),
    ({"count": 2.5}, "spec.yaml: count: expected an integer, got 2.5"),
    ({"efficiency": float("nan")}, "spec.yaml: efficiency: expected a finite number"),
    ({"bandwidth_bytes_per_s": "3TB"}, "spec.yaml: bandwidth_bytes_per_s: expected a rate"),
    ({"capacity_bytes": "inf"}, "spec.yaml: capacity_bytes: expected a quantity"),
    ({"latency_s": "-1ns"}, "spec.yaml: latency_s: expected a non-negative time"),
    ({"mode": "c"}, "spec.yaml: mode: expected one of 'a' or 'b', got 'c'"),
    ({"colour": "red"}, "spec.yaml: unknown key 'colour'"),
])
def test_bad_fields_are_one_line_naming_file_and_key(raw, expected):
    base = {"name": "hbm", "capacity_bytes": 1, "bandwidth_bytes_per_s": 1}
    assert _error({**base, **raw}).startswith(expected)


def test_missing_key_and_wrong_container_are_named():
    assert _error({"name": "x", "bandwidth_bytes_per_s": 1}) == "spec.yaml: missing key 'capacity_bytes'"
    assert _error([1, 2]) == "spec.yaml: expected a mapping, got list"


def test_alias_bomb_recursive_alias_and_deep_nesting_are_refused():
    levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    for text, words in (("\n".join(levels), "alias expansion"), ("a: &a [*a]", "contains it"),
                        ("[" * 1000 + "]" * 1000, "nested deeper")):
        with pytest.raises(ScenarioError, match=words):
            parse_yaml_text(text, "bomb.yaml")


def test_nesting_past_libyamls_own_limit_reads_as_ours():
    for text in ("[" * 1001 + "]" * 1001, "[" * 5000, "{a: " * 2000 + "}" * 2000):
        with pytest.raises(ScenarioError, match="bomb.yaml: nested deeper than 64 levels$"):
            parse_yaml_text(text, "bomb.yaml")


def test_libyaml_and_pure_python_loaders_read_the_shipped_files_alike():
    """load_yaml parses with libyaml where PyYAML has it: every shipped YAML file
    gives the same data as PyYAML's pure-Python loader, and a lone surrogate
    (which libyaml cannot take) is still one error line."""
    import yaml

    from sim import paths, schema
    files = [f for folder in (paths.topologies_dir(), paths.scenarios_dir()) for f in sorted(folder.rglob("*.yaml"))]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        assert parse_yaml_text(text, str(path)) == yaml.load(text, Loader=yaml.SafeLoader), path
    for text in ("\ud800", "a: [\udcff]"):
        with pytest.raises(ScenarioError, match=r"^s\.yaml: invalid YAML \(unacceptable character #xd"):
            parse_yaml_text(text, "s.yaml")
    assert yaml.__with_libyaml__ is False or schema._BoundedLoader is not schema._BoundedPyLoader


def test_yaml_files_that_are_not_text_or_not_yaml(tmp_path):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00name: x")
    with pytest.raises(ScenarioError, match="not UTF-8"):
        load_yaml(binary)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ScenarioError, match=r"python/object"):
        parse_yaml_text("x: !!python/object:os.system 1", "evil.yaml")


@given(st.text(max_size=30))
def test_unit_parsers_raise_value_error_or_return_finite(text):
    for parse in (parse_bytes, parse_rate, parse_seconds, parse_frequency):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert value == value and abs(value) != float("inf")
