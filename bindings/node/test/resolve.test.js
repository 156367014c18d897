// SPDX-License-Identifier: MIT
// u.resolve(host, { signal, timeout }): getaddrinfo on the threadpool. Only 'localhost' and a
// name under the reserved .invalid domain are looked up.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const {
  u, until, assertAbortedWith, abortAndExpect, occupyThreadpool, withBusyThreadpool,
} = require('./helpers.js');

test('resolves localhost to loopback address strings', async () => {
  const addrs = await u.resolve('localhost');
  assert.ok(Array.isArray(addrs) && addrs.length > 0);
  assert.ok(addrs.every((a) => typeof a === 'string'));
  assert.ok(addrs.some((a) => a === '127.0.0.1' || a === '::1'), addrs.join());
  assert.equal(u.activeTasks(), 0);
});

test('a name that does not resolve rejects with code, errno and syscall', async () => {
  await assert.rejects(u.resolve('nonexistent.invalid'), (e) => {
    assert.ok(e instanceof Error);
    assert.match(e.code, /^EAI_/);
    assert.equal(typeof e.errno, 'number');
    assert.ok(e.errno < 0);
    assert.equal(e.syscall, 'getaddrinfo');
    assert.equal(e.path, 'nonexistent.invalid');
    return true;
  });
});

test('bad input rejects with a code', async () => {
  await assert.rejects(u.resolve(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.resolve('localhost', { timeout: NaN }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
});

test('aborted before the call: rejects with the reason, no lookup starts', async () => {
  const reason = new Error('no');
  const p = u.resolve('localhost', { signal: AbortSignal.abort(reason) });
  assert.equal(u.activeTasks(), 0);
  await assertAbortedWith(p, reason);
});

test('aborted while the lookup waits in the threadpool queue: rejects with the reason', async () => {
  await withBusyThreadpool(async () => {
    const ac = new AbortController();
    const p = u.resolve('localhost', { signal: ac.signal });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    await abortAndExpect(ac, p, new Error('abort lookup'), 2,
      'only the two jobs filling the threadpool are left');
  });
});

test('timed out while queued: TimeoutError', async () => {
  const release = await occupyThreadpool();
  try {
    await assert.rejects(u.resolve('localhost', { timeout: 20 }), { name: 'TimeoutError' });
  } finally {
    await release();
  }
});

test('abort racing completion', async () => {
  const runs = [];
  for (let i = 0; i < 20; i++) {
    const ac = new AbortController();
    const reason = new Error('race');
    runs.push(u.resolve('localhost', { signal: ac.signal }).then(
      (a) => assert.ok(Array.isArray(a)),
      (e) => assert.equal(e, reason)));
    setImmediate(() => ac.abort(reason));
  }
  await Promise.all(runs);
  await until(() => u.activeTasks() === 0);
});
