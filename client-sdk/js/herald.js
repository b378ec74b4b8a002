// Herald browser client: an ES module with no dependencies and no build step.
// Speaks the herald.v1.json WebSocket subprotocol (docs/protocol.md §16): connect,
// auth, subscribe, resume from stored positions, acks, reconnect with backoff,
// heartbeat, token refresh. Runs in browsers and in Node 20 with the `ws` package.

export const PROTOCOL = 'herald.v1.json';

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
  //   WebSocket: constructor (default globalThis.WebSocket; in Node pass the `ws` package's)
  //   store: position store (default MemoryPositionStore)
  //   deviceId, clientName: sent in Hello
  //   autoAck: ack every publication once the 'publication' listeners ran (default true)
  //   backoff: { initialMs: 500, maxMs: 30000 }: reconnect delay doubles per failure, with jitter
  //   refreshBeforeMs: refresh the token this long before it expires (default 60000)
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = options;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (!this.WebSocket) throw new Error('no WebSocket implementation: pass options.WebSocket');
    this.store = options.store ?? new MemoryPositionStore();
    this.autoAck = options.autoAck ?? true;
    this.backoff = { initialMs: 500, maxMs: 30000, ...(options.backoff ?? {}) };
    this.refreshBeforeMs = options.refreshBeforeMs ?? 60000;
    this.state = State.IDLE;
    this.channels = new Set();      // wanted subscriptions (re-sent after every reconnect)
    this.pending = new Map();       // request_id -> {resolve, reject, channel?}
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
      ws = new this.WebSocket(this.url, PROTOCOL);
    } catch (e) {
      this.scheduleReconnect(`cannot open: ${e.message}`);
      return;
    }
    this.ws = ws;
    this.connections++;
    this.fatal = null;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      if (ws.protocol && ws.protocol !== PROTOCOL) {
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
      if (typeof e.data !== 'string') {
        ws.close(1003, 'herald.v1.json carries text messages');
        return;
      }
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        ws.close(1007, 'not JSON');
        return;
      }
      this.handle(msg).catch((err) => this.dispatchEvent(event('error', { code: 0, text: String(err), temporary: true })));
    };
    ws.onclose = (e) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.clearTimers();
      this.failPending(new Error(`connection closed (${e.code})`));
      if (this.closedByUser) return;
      if (this.fatal) {
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
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(obj));
  }

  track(id, channel) {
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, channel }));
  }

  waitSubscribe(channel, resolve, reject) {
    const listener = (e) => {
      if (e.detail.channel !== channel) return;
      this.removeEventListener('subscribed', listener);
      resolve(e.detail);
    };
    this.addEventListener('subscribed', listener);
    void reject;
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
          for (const ch of this.channels) this.sendSubscribe(ch).catch(() => {});
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
    const payload = base64ToBytes(m.payload);
    const detail = {
      channel: m.channel, offset, epoch: m.epoch, messageId: m.message_id, type: m.type,
      priority: PRIORITIES[m.priority] ?? toNumber(m.priority), createdAtMs: toNumber(m.created_at_ms),
      contentType: m.content_type, collapseKey: m.collapse_key, payload,
      text: new TextDecoder().decode(payload),
    };
    this.dispatchEvent(event('publication', detail));
    this.store.set(m.channel, { epoch: m.epoch, offset });
    if (this.autoAck) this.ack(m.channel, offset);
  }
}
