// The JS client (herald.js) in Node with the `ws` package against the real heraldd, over
// both subprotocols: connect, subscribe, live delivery, reconnect with resume, heartbeat,
// token refresh, refused tokens, publish errors; checksummed and fragmented frames.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { HeraldClient, MemoryPositionStore, State, PROTOCOL_BINARY, PROTOCOL_JSON } from '../herald.js';
import { startHeraldd, mintToken, publish, api, waitFor } from './helpers.mjs';

let server;
before(async () => { server = await startHeraldd(['--protocol.heartbeat_ms', '5000', '--protocol.pong_timeout_ms', '2000']); });
after(async () => {
  await server?.stop();
});

function collect(client) {
  const got = [];
  client.addEventListener('publication', (e) => got.push(e.detail));
  return got;
}

for (const protocol of [PROTOCOL_BINARY, PROTOCOL_JSON]) {
  test(`${protocol}: connects, subscribes and receives a publication with its priority`, async () => {
    const c = new HeraldClient(server.ws, { token: mintToken(`alice-${protocol}`), WebSocket, protocol });
    const got = collect(c);
    c.connect();
    const ok = await c.subscribe(`user:alice-${protocol}`);
    assert.equal(c.state, State.READY);
    assert.equal(ok.channel, `user:alice-${protocol}`);
    // Personal channels are durable: a first Subscribe is served from the (empty) inbox.
    assert.equal(ok.recovered, true);
    const r = await publish(server, `user:alice-${protocol}`, { hello: 'world' }, { priority: 'P0', type: 'margin_call' });
    await waitFor(() => got.length === 1, 5000, 'publication');
    assert.equal(got[0].offset, r.offset);
    assert.equal(got[0].priority, 0);
    assert.equal(got[0].type, 'margin_call');
    assert.deepEqual(JSON.parse(got[0].text), { hello: 'world' });
    c.close();
    assert.equal(c.state, State.CLOSED);
  });

  test(`${protocol}: acks the publications of a durable channel, not those of a live one`, async () => {
    const c = new HeraldClient(server.ws, {
      token: mintToken(`erin-${protocol}`, 3600, { channels: [`news-${protocol}`] }), WebSocket, protocol,
    });
    const sent = [];
    const send = c.send.bind(c);
    c.send = (obj) => { sent.push(obj); return send(obj); };
    const got = collect(c);
    c.connect();
    const live = await c.subscribe(`news-${protocol}`);
    const durable = await c.subscribe(`user:erin-${protocol}`);
    assert.equal(live.durable, false);
    assert.equal(durable.durable, true);
    const a = await publish(server, `news-${protocol}`, { n: 1 });
    const b = await publish(server, `user:erin-${protocol}`, { n: 2 });
    await waitFor(() => got.length === 2, 5000, 'both publications');
    await waitFor(() => sent.some((o) => o.Ack), 5000, 'an Ack');
    const acks = sent.filter((o) => o.Ack).map((o) => o.Ack);
    assert.deepEqual(acks, [{ channel: `user:erin-${protocol}`, offset: String(b.offset) }]);
    // The live channel's position still moves.
    assert.equal(c.store.get(`news-${protocol}`).offset, a.offset);
    c.close();
  });

  test(`${protocol}: a subscribe() made before READY that the server refuses rejects with the code`, { timeout: 10000 }, async () => {
    const c = new HeraldClient(server.ws, { token: mintToken(`frank-${protocol}`), WebSocket, protocol });
    const refused = c.subscribe('user:somebody-else');  // before connect(): waits for READY
    c.connect();
    await assert.rejects(refused, (e) => e.code === 505 && e.temporary === false);
    assert.equal(c.state, State.READY);  // only the subscription failed
    c.close();
  });

  test(`${protocol}: reconnects after a disconnect and resumes what was published while away`, async () => {
    const store = new MemoryPositionStore();
    const c = new HeraldClient(server.ws, {
      token: mintToken(`bob-${protocol}`), WebSocket, protocol, store, backoff: { initialMs: 400, maxMs: 800 },
    });
    const got = collect(c);
    const subscribed = [];
    c.addEventListener('subscribed', (e) => subscribed.push(e.detail));
    const states = [];
    c.addEventListener('state', (e) => states.push(e.detail.state));
    c.connect();
    await c.subscribe(`user:bob-${protocol}`);
    await publish(server, `user:bob-${protocol}`, { n: 1 });
    await waitFor(() => got.length === 1, 5000, 'first publication');

    // A temporary code: the client reconnects (kGoingAway).
    const d = await api(server, `/v1/users/bob-${protocol}/disconnect`, { code: 603, reason: 'moving you' });
    assert.equal(d.disconnected, 1);
    await waitFor(() => c.state === State.RECONNECTING, 5000, 'reconnecting');
    await publish(server, `user:bob-${protocol}`, { n: 2 });
    await publish(server, `user:bob-${protocol}`, { n: 3 });
    await waitFor(() => got.length === 3, 10000, 'resumed publications');
    assert.deepEqual(got.map((p) => JSON.parse(p.text).n), [1, 2, 3]);
    assert.deepEqual(got.map((p) => p.offset), [1, 2, 3]);
    assert.equal(c.connections, 2);
    const resumed = subscribed.at(-1);
    assert.equal(resumed.resumed, true);
    assert.equal(resumed.recovered, true);
    assert.ok(states.includes(State.RECONNECTING));
    // Live again after the resume.
    await publish(server, `user:bob-${protocol}`, { n: 4 });
    await waitFor(() => got.length === 4, 5000, 'live publication after resume');
    assert.deepEqual(store.get(`user:bob-${protocol}`).offset, 4);
    c.close();
  });

  test(`${protocol}: answers server pings: still the same connection after two heartbeats`, async () => {
    const c = new HeraldClient(server.ws, { token: mintToken(`carol-${protocol}`), WebSocket, protocol });
    c.connect();
    await c.subscribe(`user:carol-${protocol}`);
    assert.equal(c.welcome.heartbeat_ms, 5000);
    await new Promise((r) => setTimeout(r, 11000));  // two ping intervals; the pong timeout is 2 s
    assert.equal(c.state, State.READY);
    assert.equal(c.connections, 1);
    c.close();
  });

  test(`${protocol}: refreshes its token before it expires, on the same connection`, async () => {
    let calls = 0;
    const c = new HeraldClient(server.ws, {
      WebSocket, protocol, refreshBeforeMs: 59000,
      getToken: async () => { calls++; return mintToken(`dave-${protocol}`, 61); },
    });
    const auths = [];
    c.addEventListener('authenticated', (e) => auths.push(e.detail));
    c.connect();
    await waitFor(() => auths.length >= 2, 8000, 'a refreshed AuthOk');
    assert.ok(calls >= 2);
    assert.equal(c.connections, 1);
    assert.ok(auths[1].expiresAtMs >= auths[0].expiresAtMs);
    c.close();
  });

  test(`${protocol}: a refused token closes for good (no reconnect loop)`, async () => {
    const c = new HeraldClient(server.ws, { token: 'not-a-jwt', WebSocket, protocol, backoff: { initialMs: 50 } });
    const errors = [];
    c.addEventListener('error', (e) => errors.push(e.detail));
    c.connect();
    await waitFor(() => c.state === State.CLOSED, 5000, 'closed');
    assert.equal(errors[0].code, 503);
    assert.equal(c.connections, 1);
  });

  test(`${protocol}: publishes through the connection when the token allows it`, async () => {
    // The "" namespace allows no publishing: the request fails with kPermissionDenied
    // and the connection stays up.
    const c = new HeraldClient(server.ws, {
      token: mintToken(`erin-${protocol}`, 3600, { channels: [`news-${protocol}`] }), WebSocket, protocol,
    });
    c.connect();
    await c.subscribe(`user:erin-${protocol}`);
    await assert.rejects(c.publish('news', { payload: 'x' }), (e) => e.code === 505);
    assert.equal(c.state, State.READY);
    c.close();
  });
}

test('herald.v1: checksummed frames both ways and a fragmented large publication', async () => {
  const s = await startHeraldd(['--protocol.checksum', 'true']);
  try {
    const c = new HeraldClient(s.ws, { token: mintToken('frank'), WebSocket });
    const got = collect(c);
    c.connect();
    await c.subscribe('user:frank');
    assert.equal(c.welcome.checksum, true);
    // 300 KB: above the 64 KiB frame size, so the server sends fragments (§7).
    const big = 'x'.repeat(300000);
    await publish(s, 'user:frank', { big });
    await waitFor(() => got.length === 1, 10000, 'large publication');
    assert.equal(JSON.parse(got[0].text).big.length, 300000);
    // The client's own frames carry K now; a wrong checksum would close the connection.
    await assert.rejects(c.publish('news', { payload: 'x' }), (e) => e.code === 505);
    assert.equal(c.state, State.READY);
    c.close();
  } finally {
    await s.stop();
  }
});
