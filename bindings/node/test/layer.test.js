// SPDX-License-Identifier: MIT
// The layer itself: the module's shape, the host check at load, Promise settlement.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { AsyncLocalStorage } = require('node:async_hooks');
const { u } = require('./helpers.js');

test('exports exactly the demo API, all functions', () => {
  assert.deepEqual(Object.keys(u).sort(),
    ['activeTasks', 'cpu', 'fetchLine', 'readFile', 'resolve', 'sleep']);
  for (const f of Object.values(u)) assert.equal(typeof f, 'function');
});

test('every call returns a Promise, even with bad input', () => {
  for (const p of [u.sleep(), u.resolve(), u.readFile(), u.cpu(), u.fetchLine()]) {
    assert.ok(p instanceof Promise);
    p.catch(() => {});
  }
});

test('activeTasks() counts unfinished calls of this environment', async () => {
  assert.equal(u.activeTasks(), 0);
  const ac = new AbortController();
  const a = u.sleep(1e9, { signal: ac.signal });
  const b = u.sleep(1e9, { signal: ac.signal });
  assert.equal(u.activeTasks(), 2);
  ac.abort();
  await Promise.allSettled([a, b]);
  assert.equal(u.activeTasks(), 0);
});

test('an addon compiled against another libuv refuses to load with a clear error', () => {
  assert.throws(() => require(process.env.UVASYNC_NODE_HOST_PROBE), (e) => {
    assert.equal(e.code, 'ERR_UVASYNC_HOST');
    assert.match(e.message, /libuv version mismatch/);
    assert.match(e.message, new RegExp(process.versions.uv.replace(/\./g, '\\.')));
    return true;
  });
});

test('the async context of the call is kept (AsyncLocalStorage)', async () => {
  const als = new AsyncLocalStorage();
  await als.run('ctx', async () => {
    await u.sleep(1);
    assert.equal(als.getStore(), 'ctx');
  });
});

test('reactions run promptly after settlement, without other loop activity', async () => {
  // No timers or I/O besides ours: the settlement's callback scope runs the microtasks.
  const order = [];
  await u.sleep(1).then(() => order.push('then'));
  order.push('after');
  assert.deepEqual(order, ['then', 'after']);
});
