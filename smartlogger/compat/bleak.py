"""Adapter for bleak's backend interface: what a bleak backend (our ``virtual`` one) relies on.

Applications use bleak's public ``BleakClient``/``BleakScanner``, and ``field.ble`` does
exactly that for every transport. A *backend* is another matter: it subclasses
``bleak.backends.client.BaseBleakClient`` and ``bleak.backends.scanner.BaseBleakScanner``
and builds bleak's GATT objects itself. bleak documents that interface for third-party
backends but changes it between major versions, and some of it is private or provisional:

- ``BaseBleakClient`` keeps the connect timeout and the disconnect callback in private
  attributes (``_timeout``, ``_disconnected_callback``): ``BackendClient.connect_timeout``
  and ``notify_disconnected`` read them here;
- ``BaseBleakClient.name`` "is not marked as abstract ... might change this in the future
  to make it required" (bleak's own comment): ``BackendClient`` makes every subclass say
  what it returns;
- the scanner's helpers (``seen_devices``, ``is_allowed_uuid``, ``create_or_update_device``,
  ``call_detection_callbacks``) are wrapped in ``BackendScanner.start_seen`` and
  ``BackendScanner.report``;
- the constructors of ``BleakGATTService``, ``BleakGATTCharacteristic``,
  ``BleakGATTDescriptor`` and ``AdvertisementData`` changed shape in bleak 1.0 and may again:
  ``gatt_service``, ``gatt_characteristic``, ``gatt_descriptor``, ``advertisement``.

Only ``field/ble_virtual.py`` (the Bumble backend) uses this module; the platform backends
stay bleak's own. The supported range is checked at import; the tested version is pinned in
constraints.txt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smartlogger.compat import require

BLEAK_VERSION = require("bleak", "3.0", "4")

from bleak.backends.characteristic import BleakGATTCharacteristic  # noqa: E402
from bleak.backends.client import BaseBleakClient  # noqa: E402
from bleak.backends.descriptor import BleakGATTDescriptor  # noqa: E402
from bleak.backends.device import BLEDevice  # noqa: E402
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner  # noqa: E402
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection  # noqa: E402

__all__ = ["BLEAK_VERSION", "BackendClient", "BackendScanner", "BleakGATTCharacteristic",
           "BleakGATTDescriptor", "BleakGATTService", "BleakGATTServiceCollection", "advertisement",
           "gatt_characteristic", "gatt_descriptor", "gatt_service"]


class BackendClient(BaseBleakClient):
    """The base of a bleak client backend, with its private state behind public names."""

    @property
    def name(self) -> str:
        raise NotImplementedError  # every backend says what its name is (bleak may require it)

    @property
    def connect_timeout(self) -> float:
        """The ``timeout`` the application gave ``BleakClient`` (s)."""
        return float(self._timeout)

    def notify_disconnected(self) -> None:
        """Tell the application (``BleakClient(disconnected_callback=...)``) the link dropped."""
        callback = self._disconnected_callback
        if callback is not None:
            callback()


class BackendScanner(BaseBleakScanner):
    """The base of a bleak scanner backend."""

    def start_seen(self) -> None:
        """A scan starts: forget the devices seen before (bleak: "must be cleared when scanning starts")."""
        self.seen_devices = {}

    def report(self, address: str, name: str | None, details: Any, data: AdvertisementData) -> BLEDevice | None:
        """One advertisement heard: filtered by the scan's service UUIDs, then recorded and handed to
        the application's detection callbacks. Returns the device, or None if filtered out."""
        if not self.is_allowed_uuid(data.service_uuids):
            return None
        device = self.create_or_update_device(address, address, name, details, data)
        self.call_detection_callbacks(device, data)
        return device


def advertisement(*, local_name: str | None, service_uuids: list[str], rssi: int, details: Any,
                  manufacturer_data: dict[int, bytes] | None = None,
                  service_data: dict[str, bytes] | None = None, tx_power: int | None = None) -> AdvertisementData:
    """bleak's ``AdvertisementData`` of one advertisement."""
    return AdvertisementData(local_name=local_name, manufacturer_data=manufacturer_data or {},
                             service_data=service_data or {}, service_uuids=service_uuids,
                             tx_power=tx_power, rssi=rssi, platform_data=(details,))


def gatt_service(obj: Any, handle: int, uuid: str) -> BleakGATTService:
    return BleakGATTService(obj, handle, uuid)


def gatt_characteristic(obj: Any, handle: int, uuid: str, properties: list[str],
                        max_write_without_response_size: Callable[[], int],
                        service: BleakGATTService) -> BleakGATTCharacteristic:
    return BleakGATTCharacteristic(obj, handle, uuid, properties,  # type: ignore[arg-type]
                                   max_write_without_response_size, service)


def gatt_descriptor(obj: Any, handle: int, uuid: str,
                    characteristic: BleakGATTCharacteristic) -> BleakGATTDescriptor:
    return BleakGATTDescriptor(obj, handle, uuid, characteristic)
