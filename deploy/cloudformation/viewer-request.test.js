'use strict';
// node --test deploy/cloudformation
const test = require('node:test');
const assert = require('node:assert');
const { handler, formatClass, RULES } = require('./viewer-request.js');

function event(accept, querystring) {
  const headers = { host: { value: 'd111111abcdef8.cloudfront.net' } };
  if (accept !== undefined) headers.accept = { value: accept };
  return { version: '1.0', context: { eventType: 'viewer-request' }, viewer: { ip: '198.51.100.11' }, request: { method: 'GET', uri: '/photos/cat.jpg', querystring: querystring || {}, headers, cookies: {} } };
}

test('Accept headers reduce to three classes', () => {
  const cases = {
    'image/avif,image/webp,image/apng,image/*,*/*;q=0.8': 'avif', // Chrome
    'image/webp,*/*': 'webp',
    'image/avif;q=0, image/webp': 'webp',
    'image/png,image/*;q=0.8,*/*;q=0.5': 'jpeg',
    '*/*': 'jpeg',
    '': 'jpeg',
  };
  for (const [accept, want] of Object.entries(cases)) assert.strictEqual(formatClass(accept), want, accept);
  assert.strictEqual(handler(event(undefined)).headers['x-imgedge-format'].value, 'jpeg');
});

test('the query keeps only bounded variant parameters', () => {
  const req = handler(event('image/webp', {
    w: { value: '500' }, Q: { value: '73' }, utm_source: { value: 'mail' }, format: { value: 'WEBP' },
    preset: { value: 'thumbnail', multiValue: [{ value: 'thumbnail' }, { value: 'large' }] },
  }));
  assert.deepStrictEqual(req.querystring, { w: { value: '640' }, q: { value: '75' }, format: { value: 'webp' }, preset: { value: 'thumbnail' } });
  assert.strictEqual(req.headers['x-imgedge-format'].value, 'webp');
  assert.strictEqual(req.uri, '/photos/cat.jpg');
});

test('widths snap and qualities clamp, so the key space is bounded', () => {
  const widths = new Set(), qualities = new Set();
  for (let w = 1; w <= 5000; w += 7) widths.add(handler(event('', { w: { value: String(w) } })).querystring.w.value);
  for (let q = 1; q <= 100; q++) qualities.add(handler(event('', { q: { value: String(q) } })).querystring.q.value);
  assert.ok(widths.size <= 10, `${widths.size} widths`);
  assert.ok(qualities.size <= 11, `${qualities.size} qualities`);
  assert.deepStrictEqual(handler(event('', { w: { value: 'abc' }, q: { value: 'auto' } })).querystring, { q: { value: 'auto' } });
});

test('values outside the allow-lists are dropped or normalised', () => {
  const q = (query) => handler(event('', query)).querystring;
  assert.deepStrictEqual(q({ preset: { value: 'x-' + Math.random() } }), {});
  assert.deepStrictEqual(q({ preset: { value: 'THUMBNAIL' } }), { preset: { value: 'thumbnail' } });
  assert.deepStrictEqual(q({ format: { value: 'gif' }, fit: { value: 'stretch' } }), {});
  assert.deepStrictEqual(q({ f: { value: 'JPG' }, fit: { value: 'Cover' } }), { format: { value: 'jpeg' }, fit: { value: 'cover' } });
  assert.deepStrictEqual(q({ w: { value: '1e3' }, h: { value: '-5' }, q: { value: '0x50' } }), {});
});

// Random query strings, hostile and plausible alike, can only ever reach
// the allowed variants: the cache key space is bounded by the rules.
test('10,000 random query strings stay within the allowed variants', () => {
  let seed = 42; // mulberry32: deterministic, well spread
  const rand = (n) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
  const names = Object.keys(RULES.params).concat(['utm_source', 'x', 'W', 'Preset', 'FORMAT', 'cb']);
  const junk = () => ['', 'auto', 'jpg', 'AVIF', 'cover', 'fill', 'inside', 'thumbnail', 'large', '-1', '0', '99999', 'NaN', '1.5', '%00', 'a'.repeat(rand(40))][rand(16)];
  const value = () => (rand(3) === 0 ? junk() : String(rand(3000)));
  const keys = new Set();
  for (let i = 0; i < 10000; i++) {
    const query = {};
    for (let n = rand(6); n > 0; n--) query[names[rand(names.length)]] = { value: value() };
    keys.add(JSON.stringify(Object.entries(handler(event('', query)).querystring).sort()));
  }
  const qualities = new Set(['auto']);
  for (let q = 1; q <= 100; q++) qualities.add(handler(event('', { q: { value: String(q) } })).querystring.q.value);
  const bp = RULES.breakpoints.length;
  const allowed = (RULES.presets.length + 1) * (RULES.formats.length + 1) * (RULES.fits.length + 1) * (bp + 1) * (bp + 1) * (qualities.size + 1);
  console.log(`10,000 random queries → ${keys.size} distinct cache keys (allowed variants: ${allowed})`);
  assert.ok(keys.size <= allowed, `${keys.size} keys for ${allowed} allowed variants`);
  for (const k of keys) {
    for (const [name, { value }] of JSON.parse(k)) {
      const ok = { w: RULES.breakpoints.map(String), h: RULES.breakpoints.map(String), q: [...qualities], preset: RULES.presets, format: RULES.formats, fit: RULES.fits }[name];
      assert.ok(ok && ok.includes(value), `${name}=${value} is outside the allow-list`);
    }
  }
});
