// SPDX-License-Identifier: MIT
// W6abort: n sleeps of one hour, each with its own AbortController, all aborted, in Node.js.
// W6shared: the same with one AbortController for all n sleeps.
//
//   node node_abort_bench.js <W6abort|W6shared> <n>                  timers/promises setTimeout
//   node node_abort_bench.js <W6abort|W6shared> <n> --addon <path>   uvasync's demo addon
//
// Prints one line: `<workload> <node|uvasync> n=<n> ms=<total> start_ms=<..> cancel_ms=<..>
// ns_per_op=<..>`. Keep W6shared small: Node's EventTarget checks every existing listener
// for a duplicate when one is added, so n listeners on one signal cost O(n^2) for both. `start_ms` is the time to make the n calls (each registers an 'abort'
// listener and arms its wait), `cancel_ms` the time from abort() until every Promise has
// rejected (for uvasync: every task finished and its listener removed), `ms` both.
'use strict';

const { setTimeout: sleep, setImmediate: immediate } = require('node:timers/promises');
const { setMaxListeners } = require('node:events');

const now = () => process.hrtime.bigint();
const ms = (t0) => Number(now() - t0) / 1e6;

async function main() {
  const [workload, nText, flag, addonPath] = process.argv.slice(2);
  if (!['W6abort', 'W6shared'].includes(workload) || !(Number(nText) > 0) || (flag !== undefined && flag !== '--addon')) {
    console.error('usage: node node_abort_bench.js <W6abort|W6shared> <n> [--addon <path>]');
    process.exit(2);
  }
  const n = Number(nText);
  const u = flag ? require(addonPath) : null;
  const impl = u ? 'uvasync' : 'node';
  let rejected = 0;
  const count = (e) => {
    if (e.name !== 'AbortError') throw e;
    rejected++;
  };

  const shared = workload === 'W6shared';
  const controllers = new Array(shared ? 1 : n);
  for (let i = 0; i < controllers.length; i++) controllers[i] = new AbortController();
  if (shared) setMaxListeners(0, controllers[0].signal);
  const calls = new Array(n);
  const t0 = now();
  if (u) {
    for (let i = 0; i < n; i++) {
      calls[i] = u.sleep(3600e3, { signal: controllers[shared ? 0 : i].signal }).catch(count);
    }
  } else {
    for (let i = 0; i < n; i++) {
      calls[i] = sleep(3600e3, undefined, { signal: controllers[shared ? 0 : i].signal }).catch(count);
    }
  }
  const start = ms(t0);
  await immediate(); // let every wait be armed (uvasync's tasks start in a later loop turn)
  const t1 = now();
  for (const c of controllers) c.abort();
  await Promise.all(calls);
  const cancel = ms(t1);
  if (rejected !== n || (u && u.activeTasks() !== 0)) {
    console.error(`${workload} ${impl}: ${rejected} of ${n} rejected`);
    process.exit(1);
  }
  const total = start + cancel;
  console.log(`${workload} ${impl} n=${n} ms=${total.toFixed(2)} start_ms=${start.toFixed(2)} ` +
              `cancel_ms=${cancel.toFixed(2)} ns_per_op=${(total * 1e6 / n).toFixed(0)}`);
}

main();
