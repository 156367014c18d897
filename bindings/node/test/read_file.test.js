// SPDX-License-Identifier: MIT
// u.readFile(path, { signal, timeout }) -> Buffer.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {
  u, until, assertAbortedWith, abortAndExpect, occupyThreadpool, withBusyThreadpool,
} = require('./helpers.js');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'uvasync-node-'));
const file = path.join(dir, 'data.bin');
const bytes = Buffer.alloc(200 * 1024);
for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31) & 0xff;
fs.writeFileSync(file, bytes);
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('resolves with a Buffer of the whole file', async () => {
  const b = await u.readFile(file);
  assert.ok(Buffer.isBuffer(b));
  assert.ok(b.equals(bytes));
  assert.equal((await u.readFile(path.join(dir, 'data.bin'), {})).length, bytes.length);
  assert.equal(u.activeTasks(), 0);
});

test('an empty file gives an empty Buffer', async () => {
  const empty = path.join(dir, 'empty');
  fs.writeFileSync(empty, '');
  assert.equal((await u.readFile(empty)).length, 0);
});

test('a missing file rejects like Node: ENOENT, errno, syscall open, path', async () => {
  const missing = path.join(dir, 'missing');
  await assert.rejects(u.readFile(missing), (e) => {
    assert.ok(e instanceof Error);
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.errno, -os.constants.errno.ENOENT);
    assert.equal(e.syscall, 'open');
    assert.equal(e.path, missing);
    assert.equal(e.message, `ENOENT: no such file or directory, open '${missing}'`);
    return true;
  });
});

test('a directory rejects with EISDIR from read', async () => {
  await assert.rejects(u.readFile(dir), { code: 'EISDIR', syscall: 'read' });
});

test('bad input rejects with a code', async () => {
  await assert.rejects(u.readFile(), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.readFile(Buffer.from('x')), { code: 'ERR_INVALID_ARG_TYPE' });
  await assert.rejects(u.readFile('a\0b'), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' });
});

test('aborted before the call: rejects with the reason, the file is never opened', async () => {
  const reason = new Error('early');
  const p = u.readFile(path.join(dir, 'missing'), { signal: AbortSignal.abort(reason) });
  assert.equal(u.activeTasks(), 0);
  await assertAbortedWith(p, reason); // not ENOENT: nothing ran
});

test('aborted while pending (queued behind busy threads): rejects with the reason', async () => {
  await withBusyThreadpool(async () => {
    const ac = new AbortController();
    const p = u.readFile(file, { signal: ac.signal });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    await abortAndExpect(ac, p, new Error('stop reading'), 2,
      'only the two jobs filling the threadpool are left');
  });
});

test('timed out: TimeoutError', async () => {
  const release = await occupyThreadpool();
  try {
    await assert.rejects(u.readFile(file, { timeout: 15 }), { name: 'TimeoutError' });
  } finally {
    await release();
  }
});

test('abort racing completion', async () => {
  const runs = [];
  for (let i = 0; i < 50; i++) {
    const ac = new AbortController();
    const reason = new Error('race');
    runs.push(u.readFile(file, { signal: ac.signal }).then(
      (b) => assert.ok(b.equals(bytes)),
      (e) => assert.equal(e, reason)));
    if (i % 2) setImmediate(() => ac.abort(reason));
    else setTimeout(() => ac.abort(reason), 1);
  }
  await Promise.all(runs);
  await until(() => u.activeTasks() === 0);
});
