"""``accsim devices``: the device catalog."""

from __future__ import annotations

import argparse

from sim.cli.format import format_bytes, format_si


def cmd_devices(args: argparse.Namespace) -> int:
    from sim.hardware.specs import device_catalog, load_device_spec
    for name in device_catalog():
        spec = load_device_spec(name)
        tiers = ", ".join(f"{t.name} {format_bytes(t.capacity_bytes)} @ {format_si(t.bandwidth_bytes_per_s, 'B/s')}"
                          for t in spec.memory)
        print(f"{name:<16} {spec.name:<16} {format_si(spec.matrix_peak_flops_per_s(), 'FLOP/s'):>13}  "
              f"units {'+'.join(spec.unit_kinds)}; {tiers}")
    return 0


def register(sub) -> None:
    devices = sub.add_parser("devices", help="list the device specs in the catalog")
    devices.set_defaults(func=cmd_devices)
