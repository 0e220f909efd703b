"""A spoofer on a virtual site's air: what a live watcher must ignore (tests and benchmarks).

``python -m smartlogger.testing.spoofer TRANSPORT --position N`` joins the site's air as a
second "phone" (a Bumble host over the site's HCI transport, as a field tool does), listens
until it has captured two genuine live adverts of block ``N`` (``protocol.live``), then
broadcasts, from addresses of its own:

- a **replay**: the older of the captured adverts, byte for byte (a valid MAC, an old
  sequence number);
- a **forgery**: the newer one with the voltage pulled down below any end voltage and a
  sequence number far ahead, its MAC left as it was (it does not hold the kit key);
- a **foreign kit** advert: the same with another key id (a neighbour's string).

It prints one JSON line ``{"ready": ...}`` once it broadcasts (the test waits on it) and
runs until ``--duration`` has passed or it is killed. It holds no key: everything it sends
is what an attacker in the room could send.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import sys

from bumble.device import (
    Advertisement,
    AdvertisingEventProperties,
    AdvertisingParameters,
    Device,
)
from bumble.hci import Address, OwnAddressType
from bumble.host import Host
from bumble.transport import open_transport

from smartlogger.protocol import ble as pb
from smartlogger.protocol import live


def _address() -> Address:
    raw = bytearray(secrets.token_bytes(6))
    raw[0] |= 0xC0
    return Address(":".join(f"{b:02X}" for b in raw))


async def run(transport: str, position: int, duration_s: float, interval_ms: float) -> None:
    t = await open_transport(transport)
    device = Device("spoofer", _address(), host=Host(t.source, t.sink))
    captured: list[live.LiveAdvert] = []
    got = asyncio.Event()

    def on_adv(adv: Advertisement) -> None:
        try:
            a = live.from_manufacturer_data(pb.parse_manufacturer_data(adv.data_bytes))
        except live.LiveFormatError:
            return
        if a is None or a.position != position:
            return
        if not captured or a.seq > captured[-1].seq:
            captured.append(a)
        if len(captured) >= 2:
            got.set()

    device.on("advertisement", on_adv)
    await device.power_on()
    await device.start_scanning(filter_duplicates=False)
    await got.wait()
    await device.stop_scanning()
    old, new = captured[0], captured[-1]
    forged = dataclasses.replace(new, seq=new.seq + 100_000, mv=5000)  # MAC kept: invalid
    foreign = dataclasses.replace(forged, key_id=(new.key_id + 1) & 0xFFFF or 1)
    props = AdvertisingEventProperties(is_connectable=False, is_scannable=False, is_legacy=True)
    for sid, adv in enumerate((old, forged, foreign)):
        params = AdvertisingParameters(
            advertising_event_properties=props, primary_advertising_interval_min=interval_ms,
            primary_advertising_interval_max=interval_ms, own_address_type=OwnAddressType.RANDOM,
            advertising_sid=sid)
        await device.create_advertising_set(advertising_parameters=params, random_address=_address(),
                                            advertising_data=live.advertising_data(adv),
                                            auto_start=True)
    print(json.dumps({"ready": True, "position": position, "replayed_seq": old.seq,
                      "genuine_seq": new.seq, "forged_seq": forged.seq}), flush=True)
    try:
        await asyncio.sleep(duration_s)
    finally:
        await t.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("transport", help="the site's BLE transport (tcp-client:127.0.0.1:PORT)")
    ap.add_argument("--position", type=int, required=True, help="block whose adverts to spoof")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds to broadcast")
    ap.add_argument("--interval-ms", type=float, default=100.0, help="advertising interval")
    a = ap.parse_args(argv)
    try:
        asyncio.run(run(a.transport, a.position, a.duration, a.interval_ms))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
