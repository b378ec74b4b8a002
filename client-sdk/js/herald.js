// Herald browser client: an ES module with no dependencies and no build step.
// Speaks either WebSocket subprotocol of docs/protocol.md §16: herald.v1 (binary frames,
// with the small protobuf reader/writer, CRC32C and fragment reassembly below; the
// default) or herald.v1.json (JSON text). Connect, auth, subscribe, resume from stored
// positions, acks, reconnect with backoff, heartbeat, token refresh. Runs in browsers
// and in Node 18+ with the `ws` package.

export const PROTOCOL_BINARY = 'herald.v1';
export const PROTOCOL_JSON = 'herald.v1.json';

// Connection states, in the order a healthy connection goes through them.
export const State = Object.freeze({
  IDLE: 'idle',                 // not started
  CONNECTING: 'connecting',     // WebSocket opening, Hello sent
  AUTHENTICATING: 'authenticating',
  READY: 'ready',               // authenticated; subscriptions (re)sent
  RECONNECTING: 'reconnecting', // waiting for the next attempt (backoff)
  CLOSED: 'closed',             // close() called, or a non-retryable error
});

// Herald status codes the client looks at (docs/protocol.md §9).
const AUTH_FAILED = 503;
const TOKEN_EXPIRED = 504;

// Positions per channel, kept in memory (lost on reload).
export class MemoryPositionStore {
  constructor() { this.map = new Map(); }
  get(channel) { return this.map.get(channel) ?? null; }
  set(channel, position) { this.map.set(channel, position); }
  delete(channel) { this.map.delete(channel); }
}

// Positions per channel in window.localStorage (survive a page reload).
export class LocalStoragePositionStore {
  constructor(prefix = 'herald.position.') { this.prefix = prefix; }
  get(channel) {
    const v = globalThis.localStorage.getItem(this.prefix + channel);
    return v ? JSON.parse(v) : null;
  }
  set(channel, position) { globalThis.localStorage.setItem(this.prefix + channel, JSON.stringify(position)); }
  delete(channel) { globalThis.localStorage.removeItem(this.prefix + channel); }
}

const PRIORITIES = { P0: 0, P1: 1, P2: 2, P3: 3 };

function toNumber(v) {
  // protobuf's JSON mapping writes 64-bit integers as strings.
  if (typeof v === 'string') return Number(v);
  return v ?? 0;
}

function base64ToBytes(s) {
  if (!s) return new Uint8Array(0);
  const bin = globalThis.atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return globalThis.btoa(bin);
}

// ---------------------------------------------------------------- herald.v1 wire format
// Frames (§2): magic "HRLD", version, flags|type, length, sequence; then the body.
// Bodies are protobuf (proto/herald.proto); only varints and length-delimited fields
// occur in herald.v1, so a schema table drives one small reader and writer. Messages
// are plain objects shaped like protobuf's JSON mapping (field names as in the .proto,
// 64-bit integers as strings, enums by name), so both subprotocols look the same above.

const MAGIC = 0x48524c44;
const FLAG_COMPRESSED = 0x8000;
const FLAG_CHECKSUM = 0x4000;
const FLAG_FRAGMENT = 0x2000;
const FLAG_RESERVED = 0x1000;

const ENUMS = {
  Compression: ['COMPRESSION_NONE', 'COMPRESSION_ZSTD'],
  Priority: ['P0', 'P1', 'P2', 'P3'],
};

// name: [frame type, {field number: [field name, kind]}]; kinds: u32, u64 (as string),
// bool, str, bytes, Compression/Priority (enums), and '*'-suffixed repeated (packed) ones.
const SCHEMA = {
  Hello: [0x001, { 1: ['versions', 'u32*'], 2: ['compression', 'Compression*'], 3: ['dictionary_ids', 'u32*'],
    4: ['max_frame_size', 'u32'], 5: ['max_message_size', 'u32'], 6: ['heartbeat_ms', 'u32'], 7: ['checksum', 'bool'],
    8: ['client_name', 'str'], 9: ['device_id', 'str'], 10: ['resume_session_id', 'str'] }],
  Welcome: [0x002, { 1: ['version', 'u32'], 2: ['compression', 'Compression'], 3: ['dictionary_id', 'u32'],
    4: ['max_frame_size', 'u32'], 5: ['max_message_size', 'u32'], 6: ['heartbeat_ms', 'u32'],
    7: ['pong_timeout_ms', 'u32'], 8: ['session_id', 'str'], 9: ['checksum', 'bool'], 10: ['max_fragments', 'u32'] }],
  Auth: [0x003, { 1: ['token', 'str'] }],
  AuthOk: [0x004, { 1: ['user_id', 'str'], 2: ['expires_at_ms', 'u64'] }],
  Refresh: [0x005, { 1: ['token', 'str'] }],
  Subscribe: [0x010, { 1: ['request_id', 'u64'], 2: ['channel', 'str'], 3: ['resume', 'bool'], 4: ['epoch', 'str'],
    5: ['offset', 'u64'] }],
  SubscribeOk: [0x011, { 1: ['request_id', 'u64'], 2: ['channel', 'str'], 3: ['epoch', 'str'], 4: ['offset', 'u64'],
    5: ['recovered', 'bool'], 6: ['durable', 'bool'] }],
  Unsubscribe: [0x012, { 1: ['request_id', 'u64'], 2: ['channel', 'str'] }],
  UnsubscribeOk: [0x013, { 1: ['request_id', 'u64'], 2: ['channel', 'str'] }],
  Publication: [0x020, { 1: ['channel', 'str'], 2: ['offset', 'u64'], 3: ['epoch', 'str'], 4: ['message_id', 'str'],
    5: ['type', 'str'], 6: ['priority', 'Priority'], 7: ['created_at_ms', 'u64'], 8: ['collapse_key', 'str'],
    9: ['ttl_s', 'u32'], 10: ['content_type', 'str'], 11: ['payload', 'bytes'], 12: ['dismiss_on_read', 'bool'] }],
  Publish: [0x021, { 1: ['request_id', 'u64'], 2: ['channel', 'str'], 3: ['message_id', 'str'], 4: ['type', 'str'],
    5: ['priority', 'Priority'], 6: ['collapse_key', 'str'], 7: ['ttl_s', 'u32'], 8: ['content_type', 'str'],
    9: ['payload', 'bytes'], 10: ['dismiss_on_read', 'bool'] }],
  PublishOk: [0x022, { 1: ['request_id', 'u64'], 2: ['channel', 'str'], 3: ['offset', 'u64'], 4: ['epoch', 'str'],
    5: ['duplicate', 'bool'] }],
  Ack: [0x023, { 1: ['channel', 'str'], 2: ['offset', 'u64'] }],
  Dismiss: [0x024, { 1: ['channel', 'str'], 2: ['offset', 'u64'], 3: ['message_id', 'str'] }],
  Ping: [0x030, { 1: ['nonce', 'u64'] }],
  Pong: [0x031, { 1: ['nonce', 'u64'] }],
  Error: [0x032, { 1: ['code', 'u32'], 2: ['text', 'str'], 3: ['temporary', 'bool'], 4: ['request_id', 'u64'] }],
  GoAway: [0x033, { 1: ['code', 'u32'], 2: ['reason', 'str'], 3: ['reconnect_after_ms', 'u32'],
    4: ['reconnect_to', 'str'] }],
};
const NAME_OF_TYPE = new Map(Object.entries(SCHEMA).map(([name, [type]]) => [type, name]));

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (c & 1 ? 0x82f63b78 : 0);
    t[i] = c >>> 0;
  }
  return t;
})();

// CRC32C (§5.1) of bytes.
export function crc32c(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

class ProtoWriter {
  constructor() { this.bytes = []; }
  varint(v) {
    let n = BigInt.asUintN(64, BigInt(v));
    while (n >= 0x80n) {
      this.bytes.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.bytes.push(Number(n));
  }
  tag(field, wire) { this.varint((field << 3) | wire); }
  raw(field, data) {
    this.tag(field, 2);
    this.varint(data.length);
    for (const b of data) this.bytes.push(b);
  }
}

function enumNumber(kind, v) {
  if (typeof v === 'number') return v;
  const i = ENUMS[kind].indexOf(v);
  if (i < 0) throw new Error(`unknown ${kind} ${v}`);
  return i;
}

// Serializes message `name` (fields as in the JSON mapping; base64 or Uint8Array bytes).
export function encodeMessage(name, m) {
  const [, fields] = SCHEMA[name];
  const w = new ProtoWriter();
  for (const [num, [field, kind]] of Object.entries(fields)) {
    const v = m[field];
    if (v === undefined || v === null || v === '' || v === false || v === 0 || v === '0') continue;
    const f = Number(num);
    const base = kind.replace('*', '');
    if (kind.endsWith('*')) {
      if (!v.length) continue;
      const inner = new ProtoWriter();
      for (const x of v) inner.varint(ENUMS[base] ? enumNumber(base, x) : x);
      w.raw(f, inner.bytes);
    } else if (base === 'str') {
      w.raw(f, new TextEncoder().encode(v));
    } else if (base === 'bytes') {
      w.raw(f, typeof v === 'string' ? base64ToBytes(v) : v);
    } else {
      w.tag(f, 0);
      w.varint(ENUMS[base] ? enumNumber(base, v) : base === 'bool' ? 1 : v);
    }
  }
  return new Uint8Array(w.bytes);
}

// Parses a body of message `name`; unknown fields are skipped. Throws on malformed input.
export function decodeMessage(name, body) {
  const [, fields] = SCHEMA[name];
  const out = {};
  for (const [field, kind] of Object.values(fields)) {
    const base = kind.replace('*', '');
    out[field] = kind.endsWith('*') ? [] : base === 'u64' ? '0' : base === 'bool' ? false
      : base === 'str' ? '' : base === 'bytes' ? new Uint8Array(0) : ENUMS[base] ? ENUMS[base][0] : 0;
  }
  let i = 0;
  const varint = () => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (i >= body.length || shift > 63n) throw new Error('truncated or overlong varint');
      const b = body[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return v;
    }
  };
  const convert = (kind, v) => {
    if (kind === 'u64') return v.toString();
    if (kind === 'bool') return v !== 0n;
    if (ENUMS[kind]) return ENUMS[kind][Number(v)] ?? Number(v);
    return Number(BigInt.asUintN(32, v));
  };
  while (i < body.length) {
    const key = varint();
    const num = Number(key >> 3n);
    const wire = Number(key & 7n);
    const spec = fields[num];
    if (wire === 0) {
      const v = varint();
      if (spec) out[spec[0]] = convert(spec[1].replace('*', ''), v);
    } else if (wire === 2) {
      const len = Number(varint());
      if (len > body.length - i) throw new Error('truncated field');
      const data = body.subarray(i, i + len);
      i += len;
      if (!spec) continue;
      const base = spec[1].replace('*', '');
      if (base === 'str') out[spec[0]] = new TextDecoder('utf-8', { fatal: true }).decode(data);
      else if (base === 'bytes') out[spec[0]] = data.slice();
      else if (spec[1].endsWith('*')) {
        const save = [body, i];
        body = data;
        i = 0;
        while (i < body.length) out[spec[0]].push(convert(base, varint()));
        [body, i] = save;
      } else throw new Error(`field ${spec[0]} has the wrong wire type`);
    } else if (wire === 1) {
      i += 8;
    } else if (wire === 5) {
      i += 4;
    } else {
      throw new Error(`wire type ${wire} is not used by herald.v1`);
    }
    if (i > body.length) throw new Error('truncated field');
  }
  return out;
}

// Frames of one connection direction pair: encodes what the client sends (sequence
// numbers, optional checksum) and decodes what the server sends (checksum check,
// fragment reassembly). Limits follow §7.5.
export class FrameCodec {
  constructor() {
    this.sendSequence = 0;
    this.checksum = false;     // set once Welcome.checksum is true
    this.partial = new Map();  // fragment ref -> {name, pieces, size, next}
    this.maxMessage = 16 * 1024 * 1024;
  }

  encode(name, m) {
    const body0 = encodeMessage(name, m);
    const body = this.checksum ? new Uint8Array(body0.length + 4) : body0;
    let flags = 0;
    if (this.checksum) {
      body.set(body0);
      new DataView(body.buffer).setUint32(body0.length, crc32c(body0));
      flags |= FLAG_CHECKSUM;
    }
    const frame = new Uint8Array(16 + body.length);
    const dv = new DataView(frame.buffer);
    dv.setUint32(0, MAGIC);
    dv.setUint16(4, 1);
    dv.setUint16(6, flags | SCHEMA[name][0]);
    dv.setUint32(8, body.length);
    dv.setUint32(12, this.sendSequence);
    this.sendSequence = (this.sendSequence + 1) >>> 0;
    frame.set(body, 16);
    return frame;
  }

  // One binary WebSocket message -> [[name, message], ...]. Throws on a protocol error.
  decode(bytes) {
    const out = [];
    let off = 0;
    while (off < bytes.length) {
      if (bytes.length - off < 16) throw new Error('message ends inside a frame header');
      const dv = new DataView(bytes.buffer, bytes.byteOffset + off, 16);
      if (dv.getUint32(0) !== MAGIC) throw new Error('bad magic');
      if (dv.getUint16(4) !== 1) throw new Error('unsupported version');
      const typeField = dv.getUint16(6);
      const flags = typeField & 0xf000;
      const length = dv.getUint32(8);
      if (length > bytes.length - off - 16) throw new Error('message ends inside a frame');
      let body = bytes.subarray(off + 16, off + 16 + length);
      off += 16 + length;
      if (flags & FLAG_RESERVED) throw new Error('reserved flag');
      if (flags & FLAG_COMPRESSED) throw new Error('compressed frame, but no compression was negotiated');
      if (flags & FLAG_CHECKSUM) {
        if (body.length < 4) throw new Error('body too short for its checksum');
        const want = new DataView(body.buffer, body.byteOffset + body.length - 4, 4).getUint32(0);
        body = body.subarray(0, body.length - 4);
        if (crc32c(body) !== want) throw new Error('checksum mismatch');
      }
      const name = NAME_OF_TYPE.get(typeField & 0x0fff);
      if (!name) throw new Error(`unknown frame type ${typeField & 0x0fff}`);
      if (flags & FLAG_FRAGMENT) {
        if (body.length < 8) throw new Error('body too short for its fragment prefix');
        const p = new DataView(body.buffer, body.byteOffset, 8);
        const ref = p.getUint32(0);
        const index = p.getUint16(4);
        const fflags = p.getUint16(6);
        if (fflags & 0xfffe) throw new Error('bad fragment header');
        let msg = this.partial.get(ref);
        if (index === 0 && !msg) {
          if (this.partial.size >= 4) throw new Error('too many partial messages');
          msg = { name, pieces: [], size: 0, next: 0 };
          this.partial.set(ref, msg);
        }
        if (!msg || msg.next !== index || msg.name !== name) throw new Error('fragment out of order');
        msg.next++;
        msg.pieces.push(body.slice(8));
        msg.size += body.length - 8;
        if (msg.size > this.maxMessage) throw new Error('reassembled message too large');
        if (!(fflags & 1)) continue;
        this.partial.delete(ref);
        body = new Uint8Array(msg.size);
        let at = 0;
        for (const piece of msg.pieces) {
          body.set(piece, at);
          at += piece.length;
        }
      }
      out.push([name, decodeMessage(name, body)]);
    }
    return out;
  }
}

function event(type, detail) {
  // CustomEvent exists in browsers and Node >= 19; Node 18 (Debian 12) has only Event.
  if (typeof CustomEvent === 'function') return new CustomEvent(type, { detail });
  return Object.assign(new Event(type), { detail });
}

// One logical connection to heraldd that survives reconnects.
//
// Events (addEventListener): 'state' {state, reason}; 'publication' {channel,
// offset, epoch, messageId, type, priority (0-3), createdAtMs, contentType,
// payload (Uint8Array), text (payload as UTF-8), replayed}; 'subscribed' {channel,
// epoch, offset, recovered, resumed}; 'authenticated' {userId, expiresAtMs} (after
// Auth and after every token refresh); 'error' {code, text, temporary, requestId};
// 'goaway' {code, reason, reconnectAfterMs}.
export class HeraldClient extends EventTarget {
  // url: ws://host:port/ws or wss://...
  // options:
  //   token: string, or getToken: async () => string (called for every connect and refresh)
  //   protocol: PROTOCOL_BINARY ('herald.v1', default) or PROTOCOL_JSON ('herald.v1.json')
  //   WebSocket: constructor (default globalThis.WebSocket; in Node pass the `ws` package's)
  //   store: position store (default MemoryPositionStore)
  //   deviceId, clientName: sent in Hello
  //   autoAck: ack every publication of a durable channel once the 'publication' listeners
  //            ran (default true; live channels keep no ack state and are not acked)
  //   backoff: { initialMs: 500, maxMs: 30000 }: reconnect delay doubles per failure, with jitter
  //   refreshBeforeMs: refresh the token this long before it expires (default 60000)
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = options;
    this.protocol = options.protocol ?? PROTOCOL_BINARY;
    if (this.protocol !== PROTOCOL_BINARY && this.protocol !== PROTOCOL_JSON) throw new Error('unknown protocol');
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new Error('no WebSocket implementation: pass options.WebSocket');
    this.store = options.store ?? new MemoryPositionStore();
    this.autoAck = options.autoAck ?? true;
    this.durable = new Set();  // channels whose SubscribeOk said durable: only those are acked
    this.backoff = { initialMs: 500, maxMs: 30000, ...(options.backoff ?? {}) };
    this.refreshBeforeMs = options.refreshBeforeMs ?? 60000;
    this.state = State.IDLE;
    this.channels = new Set();      // wanted subscriptions (re-sent after every reconnect)
    this.pending = new Map();       // request_id -> {resolve, reject, channel?}
    this.waiters = new Map();       // channel -> [{resolve, reject}]: subscribe() before READY
    this.nextRequestId = 1;
    this.attempt = 0;
    this.ws = null;
    this.welcome = null;
    this.userId = '';
    this.timers = { reconnect: null, watchdog: null, refresh: null };
    this.reconnectFloorMs = 0;
    this.connections = 0;           // WebSocket connections opened so far
  }

  // Starts connecting (and reconnecting after failures) until close().
  connect() {
    if (this.state !== State.IDLE && this.state !== State.CLOSED) return;
    this.closedByUser = false;
    this.open();
  }

  // Closes for good: no reconnect. Pending requests are rejected.
  close() {
    this.closedByUser = true;
    this.clearTimers();
    if (this.ws) {
      try { this.ws.close(1000, 'client closed'); } catch { /* already closing */ }
    }
    this.failPending(new Error('client closed'));
    for (const ch of [...this.waiters.keys()]) this.settleWaiters(ch, new Error('client closed'));
    this.setState(State.CLOSED, 'closed by the application');
  }

  // Subscribes now (if ready) and after every reconnect, resuming from the stored
  // position. Resolves with SubscribeOk's fields once the server answered.
  subscribe(channel) {
    this.channels.add(channel);
    if (this.state !== State.READY) {
      return new Promise((resolve, reject) => this.waitSubscribe(channel, resolve, reject));
    }
    return this.sendSubscribe(channel);
  }

  unsubscribe(channel) {
    this.channels.delete(channel);
    if (this.state === State.READY) {
      const id = this.nextRequestId++;
      this.send({ Unsubscribe: { request_id: id, channel } });
      return this.track(id, channel);
    }
    return Promise.resolve();
  }

  // Tells the server everything up to `offset` on `channel` was processed.
  ack(channel, offset) {
    if (this.state === State.READY) this.send({ Ack: { channel, offset: String(offset) } });
  }

  // Publishes (needs a token that allows it). message: {type, payload (string or
  // Uint8Array), priority 0-3, messageId, contentType, collapseKey, ttlS}.
  publish(channel, message) {
    const id = this.nextRequestId++;
    const payload = typeof message.payload === 'string' ? new TextEncoder().encode(message.payload)
      : (message.payload ?? new Uint8Array(0));
    this.send({
      Publish: {
        request_id: id, channel, message_id: message.messageId ?? '', type: message.type ?? '',
        priority: `P${message.priority ?? 3}`, collapse_key: message.collapseKey ?? '',
        ttl_s: message.ttlS ?? 0, content_type: message.contentType ?? '', payload: bytesToBase64(payload),
      },
    });
    return this.track(id, channel);
  }

  // ---------------------------------------------------------------- internals

  setState(state, reason = '') {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(event('state', { state, reason }));
  }

  async token() {
    if (this.options.getToken) return await this.options.getToken();
    return this.options.token ?? '';
  }

  open() {
    this.clearTimers();
    this.setState(State.CONNECTING);
    let ws;
    try {
      ws = new this.WebSocket(this.url, this.protocol);
      ws.binaryType = 'arraybuffer';
    } catch (e) {
      this.scheduleReconnect(`cannot open: ${e.message}`);
      return;
    }
    this.ws = ws;
    this.frames = new FrameCodec();
    this.connections++;
    this.fatal = null;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      if (ws.protocol !== this.protocol) {
        ws.close(1002, 'unexpected subprotocol');
        return;
      }
      this.send({
        Hello: {
          versions: [1], client_name: this.options.clientName ?? 'herald-js/0.1',
          device_id: this.options.deviceId ?? '', compression: ['COMPRESSION_NONE'],
        },
      });
      this.armWatchdog(30000);
    };
    ws.onmessage = (e) => {
      if (ws !== this.ws) return;
      const binary = this.protocol === PROTOCOL_BINARY;
      if ((typeof e.data === 'string') === binary) {
        ws.close(1003, `${this.protocol} carries ${binary ? 'binary' : 'text'} messages`);
        return;
      }
      let msgs;
      try {
        msgs = binary ? this.frames.decode(new Uint8Array(e.data)).map(([name, m]) => ({ [name]: m }))
          : [JSON.parse(e.data)];
      } catch (err) {
        this.dispatchEvent(event('error', { code: 0, text: `undecodable message: ${err.message}`, temporary: true }));
        ws.close(binary ? 1002 : 1007, 'undecodable message');
        return;
      }
      for (const msg of msgs) {
        this.handle(msg).catch((err) => this.dispatchEvent(event('error', { code: 0, text: String(err), temporary: true })));
      }
    };
    ws.onclose = (e) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.clearTimers();
      this.failPending(new Error(`connection closed (${e.code})`));
      if (this.closedByUser) return;
      if (this.fatal) {
        for (const ch of [...this.waiters.keys()]) this.settleWaiters(ch, new Error(this.fatal));
        this.setState(State.CLOSED, this.fatal);
        return;
      }
      this.scheduleReconnect(`closed with code ${e.code}${e.reason ? ': ' + e.reason : ''}`);
    };
    ws.onerror = () => { /* onclose follows */ };
  }

  scheduleReconnect(reason) {
    const base = Math.min(this.backoff.maxMs, this.backoff.initialMs * 2 ** Math.min(this.attempt, 16));
    const delay = Math.max(this.reconnectFloorMs, base * (0.5 + Math.random() / 2));
    this.attempt++;
    this.reconnectFloorMs = 0;
    this.setState(State.RECONNECTING, reason);
    this.timers.reconnect = setTimeout(() => this.open(), delay);
  }

  send(obj) {
    if (!this.ws || this.ws.readyState !== 1) return;
    if (this.protocol === PROTOCOL_JSON) {
      this.ws.send(JSON.stringify(obj));
    } else {
      const [name] = Object.keys(obj);
      this.ws.send(this.frames.encode(name, obj[name]));
    }
  }

  track(id, channel) {
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, channel }));
  }

  // A subscribe() before READY is answered by the Subscribe sent once READY: resolved with
  // its SubscribeOk, rejected with its Error (a refused channel), or by close().
  waitSubscribe(channel, resolve, reject) {
    const list = this.waiters.get(channel) ?? [];
    list.push({ resolve, reject });
    this.waiters.set(channel, list);
  }

  settleWaiters(channel, err, detail) {
    const list = this.waiters.get(channel);
    if (!list) return;
    this.waiters.delete(channel);
    for (const w of list) {
      if (err) w.reject(err); else w.resolve(detail);
    }
  }

  sendSubscribe(channel) {
    const id = this.nextRequestId++;
    const pos = this.store.get(channel);
    const sub = { request_id: id, channel, resume: false };
    if (pos) Object.assign(sub, { resume: true, epoch: pos.epoch, offset: String(pos.offset) });
    this.send({ Subscribe: sub });
    const p = this.track(id, channel);
    this.pending.get(id).resumed = !!pos;
    return p;
  }

  failPending(err) {
    for (const [, p] of this.pending) p.reject(err);
    this.pending.clear();
  }

  clearTimers() {
    for (const k of Object.keys(this.timers)) {
      clearTimeout(this.timers[k]);
      this.timers[k] = null;
    }
  }

  // Closes the socket when the server stays silent past its heartbeat plus timeout.
  armWatchdog(ms) {
    clearTimeout(this.timers.watchdog);
    this.timers.watchdog = setTimeout(() => {
      if (this.ws) this.ws.close(4000, 'heartbeat timeout');
    }, ms);
  }

  scheduleRefresh(expiresAtMs) {
    clearTimeout(this.timers.refresh);
    if (!expiresAtMs || !this.options.getToken) return;
    const delay = Math.max(1000, expiresAtMs - Date.now() - this.refreshBeforeMs);
    this.timers.refresh = setTimeout(async () => {
      try {
        this.send({ Refresh: { token: await this.token() } });
      } catch (e) {
        this.dispatchEvent(event('error', { code: TOKEN_EXPIRED, text: `token refresh failed: ${e}`, temporary: true }));
      }
    }, delay);
  }

  async handle(msg) {
    const [name] = Object.keys(msg);
    const m = msg[name] ?? {};
    if (this.welcome) this.armWatchdog(this.welcome.heartbeat_ms + this.welcome.pong_timeout_ms + 5000);
    switch (name) {
      case 'Welcome':
        this.welcome = { ...m, heartbeat_ms: toNumber(m.heartbeat_ms), pong_timeout_ms: toNumber(m.pong_timeout_ms) };
        // §5.4: when the server checksums, every later client frame carries K too.
        if (m.checksum) this.frames.checksum = true;
        this.setState(State.AUTHENTICATING);
        this.send({ Auth: { token: await this.token() } });
        break;
      case 'AuthOk': {
        const first = this.state !== State.READY;
        this.userId = m.user_id;
        this.scheduleRefresh(toNumber(m.expires_at_ms));
        this.dispatchEvent(event('authenticated', { userId: m.user_id, expiresAtMs: toNumber(m.expires_at_ms) }));
        if (first) {
          this.attempt = 0;
          this.setState(State.READY);
          for (const ch of this.channels) {
            // A lost connection fails the request, not the waiters: the next READY retries.
            this.sendSubscribe(ch).then((d) => this.settleWaiters(ch, null, d),
              (e) => { if (e.code !== undefined) this.settleWaiters(ch, e); });
          }
        }
        break;
      }
      case 'SubscribeOk': {
        const id = toNumber(m.request_id);
        const p = this.pending.get(id);
        this.pending.delete(id);
        const detail = {
          channel: m.channel, epoch: m.epoch, offset: toNumber(m.offset), recovered: !!m.recovered,
          resumed: !!(p && p.resumed), durable: !!m.durable,
        };
        if (detail.durable) this.durable.add(m.channel); else this.durable.delete(m.channel);
        // Not recovered: what was missed is gone; continue from the channel's position.
        if (!detail.recovered) this.store.set(m.channel, { epoch: m.epoch, offset: detail.offset });
        this.dispatchEvent(event('subscribed', detail));
        if (p) p.resolve(detail);
        break;
      }
      case 'UnsubscribeOk':
      case 'PublishOk': {
        const id = toNumber(m.request_id);
        const p = this.pending.get(id);
        this.pending.delete(id);
        if (p) p.resolve({ ...m, offset: toNumber(m.offset) });
        break;
      }
      case 'Publication':
        this.onPublication(m);
        break;
      case 'Ping':
        this.send({ Pong: { nonce: m.nonce } });
        break;
      case 'Dismiss':
        this.dispatchEvent(event('dismiss', { channel: m.channel, offset: toNumber(m.offset), messageId: m.message_id }));
        break;
      case 'GoAway':
        this.reconnectFloorMs = toNumber(m.reconnect_after_ms);
        this.dispatchEvent(event('goaway', { code: m.code, reason: m.reason, reconnectAfterMs: this.reconnectFloorMs }));
        break;
      case 'Error': {
        const requestId = toNumber(m.request_id);
        const detail = { code: m.code, text: m.text, temporary: !!m.temporary, requestId };
        if (requestId !== 0) {
          const p = this.pending.get(requestId);
          this.pending.delete(requestId);
          if (p) {
            if (p.channel && this.channels.has(p.channel) && !p.resumed) this.channels.delete(p.channel);
            p.reject(Object.assign(new Error(m.text), detail));
          }
        } else if ((m.code === AUTH_FAILED || m.code === TOKEN_EXPIRED) && !this.options.getToken) {
          // A fixed token that the server refused will not work next time either.
          this.fatal = `${m.text} (code ${m.code})`;
        }
        this.dispatchEvent(event('error', detail));
        break;
      }
      default:
        break;  // newer message types are ignored
    }
  }

  onPublication(m) {
    const offset = toNumber(m.offset);
    const pos = this.store.get(m.channel);
    if (pos && pos.epoch === m.epoch && offset <= pos.offset) return;  // already seen
    const payload = typeof m.payload === 'string' ? base64ToBytes(m.payload) : m.payload;
    const detail = {
      channel: m.channel, offset, epoch: m.epoch, messageId: m.message_id, type: m.type,
      priority: PRIORITIES[m.priority] ?? toNumber(m.priority), createdAtMs: toNumber(m.created_at_ms),
      contentType: m.content_type, collapseKey: m.collapse_key, payload,
      text: new TextDecoder().decode(payload),
    };
    this.dispatchEvent(event('publication', detail));
    this.store.set(m.channel, { epoch: m.epoch, offset });
    // The server keeps no ack state for live channels (protocol.md §10.6): acking them would
    // only cost a frame.
    if (this.autoAck && this.durable.has(m.channel)) this.ack(m.channel, offset);
  }
}
