/*
 * slog.js: a read-only decoder of smartlogger logfiles (.slog) for the companion app.
 *
 * Owns: turning the bytes of a logfile (format 2.x and generation-1 "SLG1", as specified in
 * docs/LOGFILE_FORMAT.md) into what the app shows: identity, block label/position, the
 * configuration history (thresholds) and the samples of the main stream.
 *
 * Does NOT own evidence: signatures, the hash chain and the pull attestations are checked by the
 * server (GET /api/logfiles/<id>/verification); this reader only checks the footer's SHA-256 when
 * asked (SLog.checkFooter) so a damaged file is named before it is charted.
 *
 * Units as in the file: times in ms since the Unix epoch by the logger's clock, voltages in mV
 * (resolution 1 mV), temperatures in dC = 0.1 degC. Every length is checked against the bytes
 * that remain before it is used; errors name the field and the absolute byte offset.
 */
(function (root) {
  "use strict";

  var MAGIC2 = [0x89, 0x53, 0x4c, 0x4f, 0x47, 0x0d, 0x0a, 0x1a]; // "\x89SLOG\r\n\x1a"
  var MAGIC1 = [0x53, 0x4c, 0x47, 0x31]; // "SLG1"
  var MAX_SAMPLES = 1048576; // samples per SampleBlock (format limit)
  var GEN1_CONFIG = { // the fixed generation-1 configuration (LOGFILE_FORMAT.md, "Generation 1")
    chemistry: 1, cells: 6,
    v_low_alarm_mv: 9900, v_low_warn_mv: 10800, v_high_warn_mv: 14100, v_high_alarm_mv: 14700,
    t_low_alarm_dc: 0, t_low_warn_dc: 50, t_high_warn_dc: 350, t_high_alarm_dc: 450,
    rated_ah: 0, float_rate_s: 0, discharge_rate_s: 0, block_position: 0, block_label: "", test_id: ""
  };

  /** A damaged or unsupported logfile: ``field`` and absolute ``offset`` name the problem. */
  function LogfileError(field, offset, message) {
    this.name = "LogfileError";
    this.field = field;
    this.offset = offset;
    this.message = field + " at byte " + offset + ": " + message;
  }
  LogfileError.prototype = Object.create(Error.prototype);

  /** Cursor over a window [start, end) of the file; positions are absolute. */
  function Cursor(bytes, start, end) {
    this.b = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = start;
    this.end = end;
  }
  Cursor.prototype.need = function (n, field) {
    if (n < 0 || this.pos + n > this.end) {
      throw new LogfileError(field, this.pos, "needs " + n + " bytes, " + (this.end - this.pos) + " remain");
    }
  };
  Cursor.prototype.u8 = function (f) { this.need(1, f); return this.b[this.pos++]; };
  Cursor.prototype.u16 = function (f) { this.need(2, f); var v = this.dv.getUint16(this.pos, true); this.pos += 2; return v; };
  Cursor.prototype.i16 = function (f) { this.need(2, f); var v = this.dv.getInt16(this.pos, true); this.pos += 2; return v; };
  Cursor.prototype.u32 = function (f) { this.need(4, f); var v = this.dv.getUint32(this.pos, true); this.pos += 4; return v; };
  Cursor.prototype.i32 = function (f) { this.need(4, f); var v = this.dv.getInt32(this.pos, true); this.pos += 4; return v; };
  Cursor.prototype.f64 = function (f) { this.need(8, f); var v = this.dv.getFloat64(this.pos, true); this.pos += 8; return v; };
  // ms since epoch fit in a double exactly (|t| < 2^53); i64 minimum means "unknown" -> null.
  Cursor.prototype.i64 = function (f) {
    this.need(8, f);
    var v = this.dv.getBigInt64(this.pos, true);
    this.pos += 8;
    return v === -9223372036854775808n ? null : Number(v);
  };
  Cursor.prototype.u64 = function (f) { this.need(8, f); var v = this.dv.getBigUint64(this.pos, true); this.pos += 8; return Number(v); };
  Cursor.prototype.raw = function (n, f) { this.need(n, f); var s = this.b.subarray(this.pos, this.pos + n); this.pos += n; return s; };
  Cursor.prototype.str = function (n, f) { return new TextDecoder("utf-8", { fatal: false }).decode(this.raw(n, f)); };
  Cursor.prototype.str8 = function (f) { return this.str(this.u8(f + ".length"), f); };
  Cursor.prototype.str16 = function (f) { return this.str(this.u16(f + ".length"), f); };
  Cursor.prototype.leb128 = function (f) {
    var value = 0, mult = 1, at = this.pos;
    for (var i = 0; i < 10; i++) {
      var byte = this.u8(f);
      value += (byte & 0x7f) * mult;
      mult *= 128;
      if (!(byte & 0x80)) return value;
    }
    throw new LogfileError(f, at, "LEB128 longer than 10 bytes");
  };

  function startsWith(bytes, magic) {
    if (bytes.length < magic.length) return false;
    for (var i = 0; i < magic.length; i++) if (bytes[i] !== magic[i]) return false;
    return true;
  }

  /** Sample payload codec 1: first value, zig-zag deltas in groups of 32, LSB-first bit packing. */
  function readSamples(c) {
    var at = c.pos;
    var codec = c.u8("samples.codec");
    if (codec !== 1) throw new LogfileError("samples.codec", at, "unknown sample codec " + codec);
    var count = c.u32("samples.count");
    if (count > MAX_SAMPLES) throw new LogfileError("samples.count", at + 1, count + " samples exceed the limit");
    var channels = [];
    for (var ch = 0; ch < (count ? 2 : 0); ch++) {
      var name = ch === 0 ? "samples.mv" : "samples.dc";
      var out = new Float64Array(count);
      out[0] = c.i32(name + ".first");
      var mode = c.u8(name + ".mode");
      var groups = Math.floor((count - 1 + 31) / 32);
      var widths = new Array(groups);
      if (mode === 0) {
        var table = c.raw(Math.floor((groups + 1) / 2), name + ".widths");
        for (var g = 0; g < groups; g++) widths[g] = (table[g >> 1] >> (4 * (g & 1))) & 0xf;
      } else if (mode === 1) {
        var tb = c.raw(groups, name + ".widths");
        for (var g1 = 0; g1 < groups; g1++) widths[g1] = tb[g1];
      } else {
        throw new LogfileError(name + ".mode", c.pos - 1, "unknown width mode " + mode);
      }
      var nbits = 0;
      for (var g2 = 0; g2 < groups; g2++) {
        if (widths[g2] > 33) throw new LogfileError(name + ".widths", c.pos, "bit width " + widths[g2] + " > 33");
        nbits += widths[g2] * Math.min(32, count - 1 - 32 * g2);
      }
      var packed = c.raw(Math.ceil(nbits / 8), name + ".packed");
      var bit = 0, idx = 1, last = packed.length - 1;
      for (var g3 = 0; g3 < groups; g3++) {
        var w = widths[g3], n = Math.min(32, count - 1 - 32 * g3);
        var mask = w <= 24 ? (1 << w) - 1 : 0;
        for (var k = 0; k < n; k++) {
          var z = 0;
          if (w === 0) {
            z = 0;
          } else if (w <= 24) {
            // Fast path: shift (<= 7) + w (<= 24) bits fit in one 32-bit little-endian window.
            var p = bit >> 3;
            var word = packed[p] | (p + 1 <= last ? packed[p + 1] << 8 : 0) |
              (p + 2 <= last ? packed[p + 2] << 16 : 0) | (p + 3 <= last ? packed[p + 3] << 24 : 0);
            z = (word >>> (bit & 7)) & mask;
          } else {
            // Wide values (up to 33 bits) with plain arithmetic, beyond the 32-bit bit operators.
            var got = 0;
            while (got < w) {
              var byteIndex = (bit + got) >> 3, shift = (bit + got) & 7;
              var take = Math.min(8 - shift, w - got);
              z += ((packed[byteIndex] >> shift) & ((1 << take) - 1)) * Math.pow(2, got);
              got += take;
            }
          }
          bit += w;
          var d = z % 2 === 0 ? z / 2 : -(z + 1) / 2;
          out[idx] = out[idx - 1] + d;
          idx++;
        }
      }
      channels.push(out);
    }
    return channels.length ? { mv: channels[0], dc: channels[1] } : { mv: new Float64Array(0), dc: new Float64Array(0) };
  }

  function readConfig(c) {
    return {
      chemistry: c.u8("config.chemistry"), cells: c.u8("config.cells"),
      v_low_alarm_mv: c.i32("config.v_low_alarm"), v_low_warn_mv: c.i32("config.v_low_warn"),
      v_high_warn_mv: c.i32("config.v_high_warn"), v_high_alarm_mv: c.i32("config.v_high_alarm"),
      t_low_alarm_dc: c.i16("config.t_low_alarm"), t_low_warn_dc: c.i16("config.t_low_warn"),
      t_high_warn_dc: c.i16("config.t_high_warn"), t_high_alarm_dc: c.i16("config.t_high_alarm"),
      rated_ah: c.f64("config.rated_ah"), float_rate_s: c.u32("config.float_rate_s"),
      discharge_rate_s: c.u32("config.discharge_rate_s"), block_position: c.u16("config.block_position"),
      block_label: c.str8("config.block_label"), test_id: c.str8("config.test_id")
    };
  }

  /** One record (bytes [start, end) of the file); ``samples`` false skips sample decoding. */
  function readRecord(bytes, start, end, samples) {
    var c = new Cursor(bytes, start, end);
    var type = c.u8("record.type");
    var rec;
    if (type === 0x01) {
      rec = { type: "SampleBlock", start_ms: c.i64("sample_block.start_ms"), interval_ms: c.u32("sample_block.interval_ms") };
      if (rec.interval_ms <= 0) throw new LogfileError("sample_block.interval_ms", start + 9, "must be > 0");
      if (!samples) return rec;
      var s = readSamples(c);
      rec.mv = s.mv;
      rec.dc = s.dc;
    } else if (type === 0x02) {
      rec = { type: "Event", t_ms: c.i64("event.t_ms"), kind: c.u8("event.kind"), quantity: c.u8("event.quantity"),
              side: c.u8("event.side"), value: c.i64("event.value") };
    } else if (type === 0x03) {
      rec = { type: "ConfigChange", t_ms: c.i64("config_change.t_ms"), config_seq: c.u32("config_change.seq"),
              config: readConfig(c) };
    } else if (type === 0x04) {
      rec = { type: "ClockSet", old_ms: c.i64("clock_set.old_ms"), new_ms: c.i64("clock_set.new_ms") };
    } else if (type === 0x05 || type === 0x06) {
      rec = { type: type === 0x05 ? "DailySummary" : "DischargeSummary" }; // not charted by the app
      return rec;
    } else {
      throw new LogfileError("record.type", start, "unknown record type 0x" + type.toString(16));
    }
    if (c.pos !== end) throw new LogfileError("record", c.pos, (end - c.pos) + " bytes left over in the record");
    return rec;
  }

  function readGen1(bytes) {
    var c = new Cursor(bytes, 0, bytes.length - 4); // the last 4 bytes are the CRC-32
    c.raw(4, "magic");
    var version = c.u8("version");
    if (version !== 1) throw new LogfileError("version", 4, "generation-1 version " + version + " is not 1");
    var serial = c.str(12, "serial").replace(/\0+$/, "");
    var firmware = c.str(8, "firmware").replace(/\0+$/, "") || "1.0";
    var markers = c.u8("markers");
    var interval = c.u16("interval_s") * 1000;
    var runs = c.u16("run_count");
    var blocks = [];
    for (var r = 0; r < runs; r++) {
      var start = c.i64("run.start_ms"), n = c.u32("run.count");
      c.need(n * 4, "run.samples");
      var mv = new Float64Array(n), dc = new Float64Array(n);
      for (var i = 0; i < n; i++) { mv[i] = c.dv.getUint16(c.pos, true); dc[i] = c.dv.getInt16(c.pos + 2, true); c.pos += 4; }
      blocks.push({ type: "SampleBlock", start_ms: start, interval_ms: interval, mv: mv, dc: dc });
    }
    var events = [];
    var nev = c.u16("event_count");
    for (var e = 0; e < nev; e++) events.push({ type: "Event", t_ms: c.i64("event.t_ms"), kind: c.u8("event.kind"), value: c.i32("event.value") });
    return {
      version: "1.0", serial: serial, generation: 1, firmware: firmware, simulated: !!(markers & 1),
      replayed: !!(markers & 2), label: "", position: 0, test: {},
      configs: [{ t_ms: -Infinity, config: GEN1_CONFIG }], sampleBlocks: blocks, events: events, hashOffset: null
    };
  }

  /**
   * Decode a logfile. ``bytes``: Uint8Array or ArrayBuffer. Returns
   * {version, serial, generation, firmware, simulated, replayed, label, position, test,
   *  configs: [{t_ms, config}] oldest first, sampleBlocks, events, hashOffset}.
   */
  function read(bytes, options) {
    if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
    var samples = !(options && options.samples === false);
    if (startsWith(bytes, MAGIC1)) return readGen1(bytes);
    if (!startsWith(bytes, MAGIC2)) throw new LogfileError("magic", 0, "not a smartlogger logfile");
    if (bytes.length < 12) throw new LogfileError("version", 8, "file ends inside the version");
    var major = bytes[8], minor = bytes[9];
    if (major !== 2) throw new LogfileError("version", 8, "format version " + major + "." + minor + " is not readable here (reads 1.x and 2.x)");
    var out = { version: major + "." + minor, serial: "", generation: 2, firmware: "", simulated: false, replayed: false,
                label: "", position: 0, test: {}, configs: [], sampleBlocks: [], events: [], hashOffset: null };
    var headerConfigs = null, streamConfigs = [];
    var c = new Cursor(bytes, 12, bytes.length);
    for (;;) {
      var at = c.pos;
      var type = c.u8("section.type");
      var length = c.u32("section.length");
      c.need(length, "section.body");
      var body = new Cursor(bytes, c.pos, c.pos + length);
      c.pos += length;
      if (type === 0x01) {
        out.serial = body.str8("header.serial");
        out.generation = body.u8("header.generation");
        out.firmware = body.str8("header.firmware");
        var markers = body.u8("header.markers");
        out.simulated = !!(markers & 1);
        out.replayed = !!(markers & 2);
        out.created_ms = body.i64("header.created_ms");
        out.label = body.str8("header.block_label");
        out.position = body.u16("header.block_position");
        var nt = body.u8("header.test_count");
        for (var i = 0; i < nt; i++) { var k = body.str8("header.test.key"); out.test[k] = body.str16("header.test.value"); }
        var nc = body.u16("header.config_count");
        headerConfigs = [];
        for (var j = 0; j < nc; j++) {
          var len = body.leb128("header.config.length");
          body.need(len, "header.config");
          var rec = readRecord(bytes, body.pos, body.pos + len, false);
          body.pos += len;
          if (rec.type === "ConfigChange") headerConfigs.push({ t_ms: rec.t_ms, config: rec.config });
        }
      } else if (type === 0x03) {
        var stream = body.u8("stream.stream");
        body.u64("stream.anchor_seq");
        body.raw(32, "stream.anchor_hash");
        var count = body.u32("stream.count");
        for (var r = 0; r < count; r++) {
          body.leb128("record.seq_delta");
          var rlen = body.leb128("record.length");
          body.u32("record.crc32");
          body.need(rlen, "record.bytes");
          var rr = readRecord(bytes, body.pos, body.pos + rlen, samples);
          body.pos += rlen;
          if (rr.type === "ConfigChange") streamConfigs.push({ t_ms: rr.t_ms, config: rr.config });
          else if (stream === 0 && rr.type === "SampleBlock") out.sampleBlocks.push(rr);
          else if (stream === 0 && rr.type === "Event") out.events.push(rr);
        }
      } else if (type === 0xff) {
        if (length !== 44) throw new LogfileError("footer.length", at + 1, "is " + length + ", must be 44");
        if (c.pos !== bytes.length) throw new LogfileError("footer", c.pos, (bytes.length - c.pos) + " bytes after the footer");
        out.hashOffset = at;
        break;
      } // other sections (certificate, attestations, unknown minor additions) are skipped
    }
    if (headerConfigs && headerConfigs.length) out.configs = headerConfigs;
    else {
      var seen = {};
      out.configs = streamConfigs.filter(function (x) {
        var key = JSON.stringify(x);
        if (seen[key]) return false;
        seen[key] = true;
        return true;
      }).sort(function (a, b) { return a.t_ms - b.t_ms; });
    }
    out.bytes = bytes;
    return out;
  }

  /** Resolve true if the footer's SHA-256 matches the file (needs WebCrypto: a secure context). */
  function checkFooter(lf) {
    if (lf.hashOffset === null || !(root.crypto && root.crypto.subtle)) return Promise.resolve(null);
    var b = lf.bytes;
    return root.crypto.subtle.digest("SHA-256", b.subarray(0, lf.hashOffset)).then(function (d) {
      var got = new Uint8Array(d), want = b.subarray(lf.hashOffset + 5 + 12, lf.hashOffset + 5 + 44);
      for (var i = 0; i < 32; i++) if (got[i] !== want[i]) return false;
      return true;
    });
  }

  /**
   * All samples of the main stream in time order: {t_ms, mv, dc} as Float64Arrays
   * (device ms, mV, dC). Blocks are concatenated; sample i of a block is at start + i * interval.
   */
  function samplesOf(lf) {
    var n = 0;
    lf.sampleBlocks.forEach(function (b) { n += b.mv ? b.mv.length : 0; });
    var t = new Float64Array(n), mv = new Float64Array(n), dc = new Float64Array(n), o = 0;
    lf.sampleBlocks.slice().sort(function (a, b) { return a.start_ms - b.start_ms; }).forEach(function (b) {
      if (!b.mv) return;
      for (var i = 0; i < b.mv.length; i++) { t[o] = b.start_ms + i * b.interval_ms; mv[o] = b.mv[i]; dc[o] = b.dc[i]; o++; }
    });
    return { t_ms: t, mv: mv, dc: dc };
  }

  root.SLog = { read: read, readRecord: readRecord, samplesOf: samplesOf, checkFooter: checkFooter,
                LogfileError: LogfileError, isLogfile: function (b) { b = new Uint8Array(b); return startsWith(b, MAGIC2) || startsWith(b, MAGIC1); } };
})(typeof self !== "undefined" ? self : this);
