"""A capacity test as pulled logfiles, genuine and forged: the evidence cases of tests and benchmarks.

Owns ``signed_string_test`` (a small string test of hardware loggers certified by a throwaway
production root, or of simulated loggers, each pulled twice) and the adversarial files the
analysis and the server must withstand, each made the way a careful forger would:

- ``forged_simulated``: a SIMULATED file for a hardware logger's serial with made-up samples,
  signed with the TEST authority's documented key (verifies as ``simulated``);
- ``tampered``: a genuine file whose samples were shifted (+400 mV), CRCs and footer recomputed;
- ``relabelled``: a valid file of another logger with the serial changed;
- ``unsigned_continuation``: an unsigned file that continues a logger's signed chain (its
  anchor is the signed head) with a made-up later discharge;
- ``older_pull``: the logger's first pull (a genuine, older file);
- ``second_key``: the same serial certified under a second device key (a clone) with its own log.

Not used by the product at run time (like ``testing.tamper``). Never holds the real production key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from smartlogger.logfile.container import LogfileMetadata
from smartlogger.logfile.evidence import (
    Authority,
    DeviceCredentials,
    PullAttestation,
    new_authority,
    provision_device,
    simulated_credentials,
)
from smartlogger.logfile.format import build_logfile, read_logfile
from smartlogger.logfile.records import encode_record
from smartlogger.model import (
    ConfigChange,
    Generation,
    LoggerConfig,
    LoggerIdentity,
    Record,
    SampleBlock,
)
from smartlogger.testing.logfile_examples import ChainedLog
from smartlogger.testing.synthetic import synthetic_string_test
from smartlogger.testing.tamper import rebuild

#: Seed of the throwaway production root of these cases (a test key, never the manufacturer's).
CASES_ROOT_SEED = hashlib.sha256(b"smartlogger evidence cases production root").digest()
BLOCK = 600  # samples per SampleBlock record


@dataclass
class PulledLogger:
    """One logger of the test: its identity, keys, chained log and the files of its two pulls."""

    identity: LoggerIdentity
    credentials: DeviceCredentials
    config: LoggerConfig
    log: ChainedLog
    pulls: list[bytes] = field(default_factory=list)  # oldest first; the last is the latest pull
    attestations: list[PullAttestation] = field(default_factory=list)
    offset_ms: int = 0  # phone minus device time at the pulls
    end_ms: int = 0  # device time after the last sample

    @property
    def serial(self) -> str:
        return self.identity.serial


@dataclass
class SignedTest:
    """A string test as logfiles, with the authority that certified its loggers."""

    authority: Authority  # signs certificates; ``trust`` is what a verifier holds
    loggers: list[PulledLogger]
    test_meta: dict[str, str]

    @property
    def trust(self) -> list[Authority]:
        return [self.authority.public_only()]

    def files(self, *, latest_only: bool = False) -> dict[str, bytes]:
        """Every genuine file by name (``SERIAL-pullN.slog``)."""
        out = {}
        for lg in self.loggers:
            pulls = lg.pulls[-1:] if latest_only else lg.pulls
            first = len(lg.pulls) - len(pulls) + 1
            for k, data in enumerate(pulls, first):
                out[f"{lg.serial}-pull{k}.slog"] = data
        return out

    # ----------------------------------------------------------------- the forgeries

    def forged_simulated(self, i: int, *, mv_shift: int = 400) -> bytes:
        """A SIMULATED file for logger ``i``'s serial: its records with every voltage shifted, chained
        and signed anew under the TEST authority (whose key is public)."""
        lg = self.loggers[i]
        ident = replace(lg.identity, simulated=True)
        cred = simulated_credentials(ident)
        log = ChainedLog(ident.serial)
        for _, _, rec in lg.log.streams[0]:
            log.append(_shifted(rec, mv_shift))
        att = log.sign(cred, b"\x5f" * 16, lg.end_ms, lg.end_ms + lg.offset_ms)
        return log.logfile(ident, cred, [att], _meta(lg, self.test_meta))

    def tampered(self, i: int, *, mv_shift: int = 400) -> bytes:
        """Logger ``i``'s latest file with every sample shifted by ``mv_shift``; CRCs and footer
        recomputed, so only the signed chain gives it away."""
        lf = read_logfile(self.loggers[i].pulls[-1])
        streams = [[(r.seq, encode_record(_shifted(r.record, mv_shift)) if s == 0 else r.data)
                    for r in st.records] for s, st in enumerate(lf.streams)]
        return rebuild(lf, streams)

    def relabelled(self, i: int, j: int) -> bytes:
        """Logger ``j``'s genuine latest file presented as logger ``i``'s (serial changed)."""
        lf = read_logfile(self.loggers[j].pulls[-1])
        return rebuild(lf, identity=replace(lf.identity, serial=self.loggers[i].serial))

    def unsigned_continuation(self, i: int, *, hours: float = 3.0) -> bytes:
        """An unsigned file continuing logger ``i``'s signed chain: after its latest pull, a
        made-up rest and a slow discharge of ``hours`` (a block that would look far better)."""
        lg = self.loggers[i]
        log = ChainedLog(lg.serial)
        # Continue from the signed head: the anchor is the chain value after the latest pull.
        log.anchor = [lg.log.head[0], lg.log.head[1]]
        log.head = list(log.anchor)
        log.next_seq = list(lg.log.next_seq)
        t0 = lg.end_ms + 3_600_000
        n = int(hours * 3600)
        rest = np.full(1800, 13_400, dtype=np.int32)
        slope = np.linspace(12_600, 10_600, n).astype(np.int32)
        mv = np.concatenate([rest, slope])
        dc = np.full(mv.size, 250, dtype=np.int16)
        for k in range(0, mv.size, BLOCK):
            log.append(SampleBlock.of(t0 + 1000 * k, 1000, mv[k:k + BLOCK].tolist(), dc[k:k + BLOCK].tolist()))
        streams = [[(seq, raw) for seq, raw, _ in log.streams[s]] for s in range(2)]
        anchors = [(lg.log.next_seq[s], log.anchor[s]) for s in range(2)]
        return build_logfile(lg.identity, None, streams, anchors, [], _meta(lg, self.test_meta))

    def older_pull(self, i: int) -> bytes:
        """Logger ``i``'s first (older) pull."""
        return self.loggers[i].pulls[0]

    def second_key(self, i: int, *, mv_shift: int = 400) -> bytes:
        """Logger ``i``'s serial certified under a second device key (a clone), with its own log:
        the genuine records shifted by ``mv_shift``, signed by the clone's key."""
        lg = self.loggers[i]
        cred = provision_device(lg.identity, self.authority, issued_ms=lg.credentials.certificate.issued_ms + 1,
                                seed=hashlib.sha256(b"clone/" + lg.serial.encode()).digest())
        log = ChainedLog(lg.serial)
        for _, _, rec in lg.log.streams[0]:
            log.append(_shifted(rec, mv_shift))
        att = log.sign(cred, b"\xc1" * 16, lg.end_ms, lg.end_ms + lg.offset_ms)
        return log.logfile(lg.identity, cred, [att], _meta(lg, self.test_meta))


def _shifted(rec: Record, mv_shift: int) -> Record:
    if isinstance(rec, SampleBlock) and mv_shift:
        return SampleBlock.of(rec.start_ms, rec.interval_ms, [v + mv_shift for v in rec.mv], list(rec.dc))
    return rec


def _meta(lg: PulledLogger, test_meta: dict[str, str]) -> LogfileMetadata:
    return LogfileMetadata(lg.config.block_label, lg.config.block_position, dict(test_meta),
                           lg.end_ms + lg.offset_ms)


def signed_string_test(n_blocks: int = 3, *, hardware: bool = True, seed: int = 4,
                       capacity_ah: list[float] | None = None, labels: list[str] | None = None,
                       test_meta: dict[str, str] | None = None,
                       authority: Authority | None = None) -> SignedTest:
    """A ~30-min 100 A test of 50 Ah blocks, each logger pulled twice (after the float phase, and
    at the end: the latest pull holds every record and both attestations).

    ``hardware``: serials ``SL2-0000NN`` certified by ``authority`` (default: a throwaway
    production root from ``CASES_ROOT_SEED``); else simulated ``SIM-NNNN`` loggers (TEST authority).
    """
    caps = capacity_ah or [50.0, 45.0, 40.0, 48.0, 44.0, 46.0][:n_blocks] + [50.0] * max(0, n_blocks - 6)
    logs, _ = synthetic_string_test(n_blocks, current_a=100.0, capacity_ah=caps, rated_ah=50.0, pre_s=120,
                                    post_s=120, seed=seed, simulated=not hardware)
    root = authority or new_authority("production", seed=CASES_ROOT_SEED, name="evidence cases root")
    meta = dict(test_meta or {"load": "100 A", "rated_time": "30min", "test_id": "EVIDENCE-1"})
    loggers = []
    for i, blog in enumerate(logs):
        if hardware:
            ident = LoggerIdentity(f"SL2-{i + 1:06d}", Generation.GEN2, "2.1.0")
            cred = provision_device(ident, root, issued_ms=1_700_000_000_000 + i,
                                    seed=hashlib.sha256(b"device/" + ident.serial.encode()).digest())
        else:
            ident = blog.identity
            cred = simulated_credentials(ident)
        label = labels[i] if labels is not None else blog.config.block_label
        cfg = blog.config.with_changes(block_label=label)
        ble = [o for o in blog.clock_observations if o.source == "ble"]
        offset = ble[0].phone_ms - ble[0].device_ms if ble else 0
        lg = PulledLogger(ident, cred, cfg, ChainedLog(ident.serial), offset_ms=offset)
        lg.log.append(ConfigChange(int(blog.t_ms[0]) - 1000, cfg, 1))
        lg.log.append(ConfigChange(int(blog.t_ms[0]) - 1000, cfg, 1), stream=1)
        n = len(blog)
        first_pull_at = (n // 4 // BLOCK) * BLOCK or BLOCK
        for k in range(0, n, BLOCK):
            if k == first_pull_at:
                t = int(blog.t_ms[k - 1]) + 1000
                lg.attestations.append(lg.log.sign(cred, bytes([1 + i]) * 16, t, t + offset))
                lg.pulls.append(lg.log.logfile(ident, cred, list(lg.attestations), _meta(lg, meta)))
            lg.log.append(SampleBlock.of(int(blog.t_ms[k]), 1000, blog.mv[k:k + BLOCK].tolist(),
                                         blog.dc[k:k + BLOCK].tolist()))
        lg.end_ms = int(blog.t_ms[-1]) + 1000
        lg.attestations.append(lg.log.sign(cred, bytes([101 + i]) * 16, lg.end_ms, lg.end_ms + offset))
        lg.pulls.append(lg.log.logfile(ident, cred, list(lg.attestations), _meta(lg, meta)))
        loggers.append(lg)
    return SignedTest(root, loggers, meta)
