"""The live advert (protocol.live): real bytes both ways, the MAC, the NFC key records and the
firmware's beacon (sequence numbers never reused across a power loss)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smartlogger.device.beacon import RESERVE, LiveBeacon, LiveSource
from smartlogger.protocol import ble as pb
from smartlogger.protocol import live
from smartlogger.protocol.live import KitKey, LiveAdvert, LiveFormatError, LiveState
from smartlogger.protocol.nfc import KeyIdRecord, KeyRecord, NfcRecordError

KEY = KitKey(bytes(range(16)))

# (advert, payload bytes): decoded from the bytes, encoded to them (docs/LIVE.md example)
TABLE = [
    (LiveAdvert(LiveState.DISCHARGE, True, 7831, 43285, 7, 1234, 36000, 11874, -15,
                bytes.fromhex("156d128f")),
     "0105971e15a90700d2040000a08c0000622ef1ff156d128f"),
]


@pytest.mark.parametrize(("advert", "hexbytes"), TABLE)
def test_payload_bytes_both_ways(advert: LiveAdvert, hexbytes: str) -> None:
    assert LiveAdvert.from_bytes(bytes.fromhex(hexbytes)) == advert
    assert advert.to_bytes().hex() == hexbytes
    assert advert.verify(KEY)
    assert KEY.key_id == 7831 and live.tag_for_test("UPS-A-2026") == 43285


def test_advertising_data_fits_a_legacy_pdu_and_bleak_sees_it_as_manufacturer_data() -> None:
    adv = TABLE[0][0]
    data = live.advertising_data(adv)
    assert len(data) == live.AD_LEN == 28 <= 31
    assert data[:4].hex() == "1bffffff"
    md = pb.parse_manufacturer_data(data)
    assert live.from_manufacturer_data(md) == adv
    assert live.from_manufacturer_data({0x0059: b"\x01"}) is None


adverts = st.builds(
    LiveAdvert, st.sampled_from(list(LiveState)), st.booleans(), st.just(KEY.key_id),
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(-0x8000, 0x7FFF))


@given(adverts)
def test_round_trip(adv: LiveAdvert) -> None:
    sealed = adv.sealed(KEY)
    back = LiveAdvert.from_bytes(sealed.to_bytes())
    assert back == sealed and back.verify(KEY)


@given(adverts, st.data())
def test_a_bit_flip_is_never_accepted(adv: LiveAdvert, data: st.DataObject) -> None:
    raw = bytearray(adv.sealed(KEY).to_bytes())
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    try:
        back = LiveAdvert.from_bytes(bytes(raw))
    except LiveFormatError:
        return
    assert not back.verify(KEY)


def test_another_kits_key_does_not_verify() -> None:
    other = KitKey(bytes(16))
    adv = TABLE[0][0]
    assert not adv.verify(other)
    with pytest.raises(LiveFormatError):
        adv.sealed(other)  # the key id is not this key's


@pytest.mark.parametrize(("raw", "offset"), [
    (b"", 0), (b"\x02" + bytes(23), 0), (b"\x01" + bytes(10), 11), (b"\x01\x80" + bytes(22), 1),
    (b"\x01\x03" + bytes(22), 1)])
def test_malformed_payloads_name_the_byte(raw: bytes, offset: int) -> None:
    with pytest.raises(LiveFormatError) as err:
        LiveAdvert.from_bytes(raw)
    assert err.value.offset == offset


def test_nfc_key_records_round_trip_and_check_the_id() -> None:
    payload = KeyRecord(KEY).to_payload()
    assert KeyRecord.from_payload(payload).key == KEY
    assert KeyIdRecord.from_payload(KeyIdRecord(KEY.key_id).to_payload()).key_id == KEY.key_id
    bad = bytearray(payload)
    bad[2] ^= 1  # the key id, CRC fixed up: intact but not this key's id
    import zlib
    body = bytes(bad[:-4])
    with pytest.raises(NfcRecordError, match="key id"):
        KeyRecord.from_payload(body + zlib.crc32(body).to_bytes(4, "big"))


def _src(ms: int, mv: int = 12000, discharging: bool = True) -> LiveSource:
    return LiveSource(ms, mv, 250, discharging, False, False, 3, "T1")


def test_beacon_sequence_numbers_survive_a_power_loss() -> None:
    b = LiveBeacon()
    assert b.advert(_src(1000)) is None  # no key yet
    b.provision(KEY, 500)
    first = b.advert(_src(1000))
    assert first is not None and first.seq == 1 and first.t_ds == 5 and first.verify(KEY)
    assert b.advert(_src(1000)) is first  # the same sample is the same advert
    second = b.advert(_src(2000, 11990))
    assert second is not None and second.seq == 2
    stored = b.to_json()  # the key store as flash holds it
    rebooted = LiveBeacon.from_json(stored)
    after = rebooted.advert(_src(3000))
    assert after is not None and after.seq > second.seq and after.seq == RESERVE + 2
    assert rebooted.advert(_src(400)) is None  # the clock went back past the tap
