'use strict';
// node --test deploy/cloudformation
const test = require('node:test');
const assert = require('node:assert');
const { handler, formatClass } = require('./viewer-request.js');

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
