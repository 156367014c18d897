// SPDX-License-Identifier: MIT
// u.sleep(ms, { signal, timeout }).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const {
  u, busyWait, until, assertAbortedWith, abortListeners, abortAndExpect,
} = require('./helpers.js');

test('resolves with undefined after at least ms on the loop clock', async () => {
  const t0 = performance.now();
  const v = await u.sleep(30);
  assert.equal(v, undefined);
  assert.ok(performance.now() - t0 >= 29, 'never early (the loop clock has 1 ms resolution)');
  assert.equal(u.activeTasks(), 0);
});

test('counts from the call even when JavaScript held the loop before it', async () => {
  // Node caches the loop time per iteration; the layer refreshes it before taking deadlines.
  busyWait(40);
  const t0 = performance.now();
  await u.sleep(60);
  assert.ok(performance.now() - t0 >= 59);
});

test('bad input rejects with a code instead of throwing', async () => {
  await assert.rejects(u.sleep(-1), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(u.sleep(Infinity), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(u.sleep('10'), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.sleep(), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.sleep(1, 5), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.sleep(1, { signal: {} }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.sleep(1, { timeout: -5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
  await assert.rejects(u.sleep(1, { timeout: 'x' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  assert.equal(u.activeTasks(), 0);
});

test('null and undefined options mean none', async () => {
  await u.sleep(1, null);
  await u.sleep(1, undefined);
  await u.sleep(1, {});
  await u.sleep(1, { signal: null, timeout: undefined });
});

test('a signal aborted before the call rejects at once with its reason and never starts', async () => {
  const ac = new AbortController();
  const reason = new Error('stop');
  ac.abort(reason);
  const p = u.sleep(1e9, { signal: ac.signal });
  assert.equal(u.activeTasks(), 0, 'no task was started');
  await assertAbortedWith(p, reason);
  assert.equal(abortListeners(ac.signal), 0);
});

test('aborted while pending: rejects with the reason after the task finished', async () => {
  const ac = new AbortController();
  const p = u.sleep(1e9, { signal: ac.signal });
  assert.equal(u.activeTasks(), 1);
  assert.equal(abortListeners(ac.signal), 1, 'one listener, added with addEventListener');
  assert.equal(ac.signal.onabort, null, 'onabort is never touched');
  await new Promise((r) => setImmediate(r));
  await abortAndExpect(ac, p, { any: 'value' }, 0,
    'settled only after the task completely finished');
});

test('abort() without a reason rejects with the DOMException AbortError', async () => {
  const ac = new AbortController();
  const p = u.sleep(1e9, { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, { name: 'AbortError' });
});

test('a signal with no reason rejects with an Error named AbortError', async () => {
  // An AbortSignal-like object whose reason is undefined (a non-standard signal).
  class Signal extends EventTarget {
    aborted = false;
    reason = undefined;
    fire() { this.aborted = true; this.dispatchEvent(new Event('abort')); }
  }
  const s = new Signal();
  const p = u.sleep(1e9, { signal: s });
  s.fire();
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'AbortError');
    assert.equal(e.code, 'ABORT_ERR');
    return true;
  });
});

test('a user onabort handler is left alone and still runs', async () => {
  const ac = new AbortController();
  let called = 0;
  ac.signal.onabort = () => { called++; };
  const p = u.sleep(1e9, { signal: ac.signal });
  assert.equal(typeof ac.signal.onabort, 'function');
  ac.abort();
  await assert.rejects(p, { name: 'AbortError' });
  assert.equal(called, 1);
});

test('timeout rejects with an Error named TimeoutError', async () => {
  const t0 = performance.now();
  await assert.rejects(u.sleep(1e9, { timeout: 20 }), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'TimeoutError');
    assert.equal(e.code, 'ETIMEDOUT');
    return true;
  });
  assert.ok(performance.now() - t0 >= 19);
  assert.equal(u.activeTasks(), 0);
});

test('a timeout longer than the work changes nothing', async () => {
  assert.equal(await u.sleep(5, { timeout: 1e6 }), undefined);
});

test('timeout 0 expires at once (the body starts, its first wait is cancelled)', async () => {
  await assert.rejects(u.sleep(1e9, { timeout: 0 }), { name: 'TimeoutError' });
});

test('abort and timeout in the same loop iteration: the abort (outer scope) wins', async () => {
  const ac = new AbortController();
  const reason = new Error('user abort');
  const p = u.sleep(1e9, { signal: ac.signal, timeout: 10 });
  await new Promise((r) => setImmediate(r)); // the task has entered its timeout scope
  busyWait(30); // the deadline passes while the loop is held ...
  ac.abort(reason); // ... and the abort comes before the loop sees it
  await assertAbortedWith(p, reason);
});

test('abort racing completion: resolves or rejects with the reason, always cleans up', async () => {
  const outcomes = { resolved: 0, aborted: 0 };
  const all = [];
  for (let i = 0; i < 200; i++) {
    const ac = new AbortController();
    const reason = new Error('race ' + i);
    const p = u.sleep(i % 3, { signal: ac.signal }).then(
      (v) => { assert.equal(v, undefined); outcomes.resolved++; },
      (e) => { assert.equal(e, reason); outcomes.aborted++; });
    const abort = () => ac.abort(reason);
    if (i % 4 === 0) setImmediate(abort);
    else if (i % 4 === 1) setTimeout(abort, i % 3);
    else if (i % 4 === 2) queueMicrotask(abort);
    else p.finally(abort); // after settlement: nothing happens
    all.push(p.then(() => assert.equal(abortListeners(ac.signal), 0)));
  }
  await Promise.all(all);
  assert.equal(outcomes.resolved + outcomes.aborted, 200);
  await until(() => u.activeTasks() === 0);
});
