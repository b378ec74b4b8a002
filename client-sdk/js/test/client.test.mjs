// The JS client (herald.js) in Node 20 with the `ws` package against the real heraldd:
// connect, subscribe, live delivery, reconnect with resume, heartbeat, token refresh.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { HeraldClient, MemoryPositionStore, State } from '../herald.js';
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

test('connects, subscribes and receives a publication with its priority', async () => {
  const c = new HeraldClient(server.ws, { token: mintToken('alice'), WebSocket });
  const got = collect(c);
  c.connect();
  const ok = await c.subscribe('user:alice');
  assert.equal(c.state, State.READY);
  assert.equal(ok.channel, 'user:alice');
  assert.equal(ok.recovered, false);
  const r = await publish(server, 'user:alice', { hello: 'world' }, { priority: 'P0', type: 'margin_call' });
  await waitFor(() => got.length === 1, 5000, 'publication');
  assert.equal(got[0].offset, r.offset);
  assert.equal(got[0].priority, 0);
  assert.equal(got[0].type, 'margin_call');
  assert.deepEqual(JSON.parse(got[0].text), { hello: 'world' });
  c.close();
  assert.equal(c.state, State.CLOSED);
});

test('reconnects after a disconnect and resumes what was published while away', async () => {
  const store = new MemoryPositionStore();
  const c = new HeraldClient(server.ws, {
    token: mintToken('bob'), WebSocket, store, backoff: { initialMs: 400, maxMs: 800 },
  });
  const got = collect(c);
  const subscribed = [];
  c.addEventListener('subscribed', (e) => subscribed.push(e.detail));
  const states = [];
  c.addEventListener('state', (e) => states.push(e.detail.state));
  c.connect();
  await c.subscribe('user:bob');
  await publish(server, 'user:bob', { n: 1 });
  await waitFor(() => got.length === 1, 5000, 'first publication');

  // A temporary code: the client reconnects (kGoingAway).
  const d = await api(server, '/v1/users/bob/disconnect', { code: 603, reason: 'moving you' });
  assert.equal(d.disconnected, 1);
  await waitFor(() => c.state === State.RECONNECTING, 5000, 'reconnecting');
  await publish(server, 'user:bob', { n: 2 });
  await publish(server, 'user:bob', { n: 3 });
  await waitFor(() => got.length === 3, 10000, 'resumed publications');
  assert.deepEqual(got.map((p) => JSON.parse(p.text).n), [1, 2, 3]);
  assert.deepEqual(got.map((p) => p.offset), [1, 2, 3]);
  assert.equal(c.connections, 2);
  const resumed = subscribed.at(-1);
  assert.equal(resumed.resumed, true);
  assert.equal(resumed.recovered, true);
  assert.ok(states.includes(State.RECONNECTING));
  // Live again after the resume.
  await publish(server, 'user:bob', { n: 4 });
  await waitFor(() => got.length === 4, 5000, 'live publication after resume');
  assert.deepEqual(store.get('user:bob').offset, 4);
  c.close();
});

test('answers server pings: still the same connection after two heartbeats', async () => {
  const c = new HeraldClient(server.ws, { token: mintToken('carol'), WebSocket });
  c.connect();
  await c.subscribe('user:carol');
  assert.equal(c.welcome.heartbeat_ms, 5000);
  await new Promise((r) => setTimeout(r, 11000));  // two ping intervals; the pong timeout is 2 s
  assert.equal(c.state, State.READY);
  assert.equal(c.connections, 1);
  c.close();
});

test('refreshes its token before it expires, on the same connection', async () => {
  let calls = 0;
  const c = new HeraldClient(server.ws, {
    WebSocket, refreshBeforeMs: 59000,
    getToken: async () => { calls++; return mintToken('dave', 61); },
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

test('a refused token closes for good (no reconnect loop)', async () => {
  const c = new HeraldClient(server.ws, { token: 'not-a-jwt', WebSocket, backoff: { initialMs: 50 } });
  const errors = [];
  c.addEventListener('error', (e) => errors.push(e.detail));
  c.connect();
  await waitFor(() => c.state === State.CLOSED, 5000, 'closed');
  assert.equal(errors[0].code, 503);
  assert.equal(c.connections, 1);
});

test('publishes through the connection when the token allows it', async () => {
  // The "" namespace allows no publishing: the request fails with kPermissionDenied
  // and the connection stays up.
  const c = new HeraldClient(server.ws, { token: mintToken('erin'), WebSocket });
  c.connect();
  await c.subscribe('user:erin');
  await assert.rejects(c.publish('news', { payload: 'x' }), (e) => e.code === 505);
  assert.equal(c.state, State.READY);
  c.close();
});
