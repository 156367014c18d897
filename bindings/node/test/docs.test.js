// SPDX-License-Identifier: MIT
// Every C++ and Meson example in docs/node.md is code that is compiled: it must appear, line
// for line, in the demo addon or in bindings/node/meson.build.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..', '..', '..');
const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');
const sources = {
  cpp: read('bindings/node/demo/demo.cpp'),
  meson: read('bindings/node/meson.build'),
};

function blocks(markdown) {
  const out = [];
  const re = /^```(\w+)\n([\s\S]*?)^```$/gm;
  for (let m; (m = re.exec(markdown)) !== null;) out.push({ lang: m[1], code: m[2] });
  return out;
}

test('every cpp and meson block of docs/node.md is compiled code', () => {
  const found = blocks(read('docs/node.md')).filter((b) => b.lang in sources);
  assert.ok(found.length >= 6, 'the page has its examples');
  for (const b of found) {
    assert.ok(sources[b.lang].includes(b.code),
      `this ${b.lang} block of docs/node.md is not in the compiled sources:\n${b.code}`);
  }
});
