// SPDX-License-Identifier: MIT
// Shared by the demo addon's tests: loading it, a local TCP server, waiting without timers.
'use strict';

const assert = require('node:assert/strict');
const net = require('node:net');
const { getEventListeners } = require('node:events');

/** The demo addon built by Meson (UVASYNC_NODE_DEMO is set by bindings/node/meson.build). */
function addonPath() {
  const p = process.env.UVASYNC_NODE_DEMO;
  if (!p) throw new Error('UVASYNC_NODE_DEMO is not set; run the tests through meson test');
  return p;
}

const u = require(addonPath());

/** Blocks the JavaScript thread (and so Node's loop) for `ms` of wall time. */
function busyWait(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) { /* spin */ }
}

/** A server on 127.0.0.1 that answers each line with 'echo:<line>\n' (or never, if `silent`). */
async function lineServer({ silent = false } = {}) {
  const sockets = new Set();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0 && !silent) s.end('echo:' + buf.slice(0, i) + '\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    sockets,
    connections: () => new Promise((r) => server.getConnections((e, n) => r(n))),
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A port on 127.0.0.1 where nothing listens (bound, then closed). */
async function closedPort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Waits until `pred()` holds, polling once per loop turn (setImmediate), never by time. */
async function until(pred) {
  while (!pred()) await new Promise((r) => setImmediate(r));
}

/** Asserts the outcome of an abort: the rejection is exactly `reason`, the task is gone. */
async function assertAbortedWith(promise, reason) {
  await assert.rejects(promise, (e) => {
    assert.equal(e, reason);
    return true;
  });
}

/** Number of 'abort' listeners on `signal`. */
function abortListeners(signal) {
  return getEventListeners(signal, 'abort').length;
}

/**
 * Aborts `ac` with `reason` and checks the outcome: `promise` rejects with exactly `reason`,
 * `active` tasks are left when it does (`why` says which), and no abort listener remains.
 */
async function abortAndExpect(ac, promise, reason, active, why) {
  ac.abort(reason);
  await assert.rejects(promise, (e) => {
    assert.equal(e, reason);
    assert.equal(u.activeTasks(), active, why);
    return true;
  });
  assert.equal(abortListeners(ac.signal), 0, 'the listener is removed');
}

/**
 * Runs `body` while every threadpool thread is busy, frees them, and waits until no task is
 * left.
 */
async function withBusyThreadpool(body) {
  const release = await occupyThreadpool();
  try {
    await body();
  } finally {
    await release();
  }
  await until(() => u.activeTasks() === 0);
}

/** Occupies every threadpool thread (UV_THREADPOOL_SIZE, 2 in the tests) with a cpu job. */
async function occupyThreadpool() {
  const ac = new AbortController();
  const n = Number(process.env.UV_THREADPOOL_SIZE || 4);
  const jobs = [];
  for (let i = 0; i < n; i++) jobs.push(u.cpu(1e15, { signal: ac.signal }).catch(() => {}));
  // The tasks start in a later loop turn and queue their work then.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  return async () => {
    ac.abort();
    await Promise.all(jobs);
  };
}

module.exports = {
  u, addonPath, busyWait, lineServer, closedPort, until, assertAbortedWith, abortListeners,
  abortAndExpect, occupyThreadpool, withBusyThreadpool,
};
