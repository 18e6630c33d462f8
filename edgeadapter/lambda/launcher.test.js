'use strict';
// Tests of the Lambda@Edge launcher against the real Go adapter binary
// (IMGEDGE_EDGE_BIN, built by `make edge-test`). Run with: node --test
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const BIN = process.env.IMGEDGE_EDGE_BIN;
const FIXTURES = path.join(__dirname, '..', 'cloudfront', 'testdata');

function event(fixture, uri) {
  const ev = JSON.parse(fs.readFileSync(path.join(FIXTURES, fixture), 'utf8'));
  if (uri) ev.Records[0].cf.request.uri = uri;
  return ev;
}

// launcher installs index.js, the binary (unless missing) and a config in a
// fresh directory, the way the deployment zip lays them out.
function launcher(config, { withBinary = true } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgedge-launcher-'));
  fs.copyFileSync(path.join(__dirname, 'index.js'), path.join(dir, 'index.js'));
  if (withBinary) fs.symlinkSync(path.resolve(BIN), path.join(dir, 'imgedge-edge'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({
    deadline_ms: 500, launcher_deadline_ms: 1000, breaker: { failures: 100, open_ms: 1000 }, ...config,
  }));
  return require(path.join(dir, 'index.js'));
}

// A service that accepts connections and never answers.
async function hangingService(t) {
  const sockets = [];
  const srv = net.createServer((s) => sockets.push(s));
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => { sockets.forEach((s) => s.destroy()); srv.close(); });
  return `127.0.0.1:${srv.address().port}`;
}

async function timed(fn) {
  const start = Date.now();
  const out = await fn();
  return [out, Date.now() - start];
}

test('the binary is built', () => assert.ok(BIN && fs.existsSync(BIN), 'set IMGEDGE_EDGE_BIN to the built adapter'));

test('a normal event goes through the real binary', async (t) => {
  const l = launcher({ service: { address: '127.0.0.1:1', insecure: true } });
  t.after(() => l.child() && l.child().kill());
  const ev = event('s3_plain.json', '/index.html'); // not an image: passed through by the adapter
  const out = await l.handler(ev);
  assert.deepStrictEqual(out, ev.Records[0].cf.request);
  assert.ok(l.child(), 'the adapter process stays up between events');
  const pid = l.child().pid;
  await l.handler(ev);
  assert.strictEqual(l.child().pid, pid, 'one process per execution environment');
});

test('an image event is rewritten by the real service', { skip: !process.env.IMGEDGE_EDGE_SERVICE && 'IMGEDGE_EDGE_SERVICE not set' }, async (t) => {
  const l = launcher({
    service: { address: process.env.IMGEDGE_EDGE_SERVICE, insecure: true, token: process.env.IMGEDGE_EDGE_TOKEN || '' },
    buckets: { 'demo.s3.us-east-1.amazonaws.com': process.env.IMGEDGE_EDGE_BUCKET || 'demo' },
    deadline_ms: 10000, launcher_deadline_ms: 15000,
  });
  t.after(() => l.child() && l.child().kill());
  const ev = event('s3_accept_webp.json', process.env.IMGEDGE_EDGE_URI);
  const out = await l.handler(ev);
  assert.match(out.uri, /^\/ProcessedImages\/.*\.webp$/);
  assert.deepStrictEqual({ ...out, uri: ev.Records[0].cf.request.uri }, ev.Records[0].cf.request, 'only the uri changes');
});

test('the binary missing', async () => {
  const l = launcher({ service: { address: '127.0.0.1:1', insecure: true } }, { withBinary: false });
  const ev = event('s3_plain.json');
  const [out, ms] = await timed(() => l.handler(ev));
  assert.deepStrictEqual(out, ev.Records[0].cf.request);
  assert.ok(ms < 1000 + 500, `answered after ${ms} ms`);
});

test('the binary killed mid-event', async (t) => {
  const service = await hangingService(t);
  const l = launcher({ service: { address: service, insecure: true }, deadline_ms: 5000, launcher_deadline_ms: 6000 });
  t.after(() => l.child() && l.child().kill());
  const ev = event('s3_plain.json');
  const pending = timed(() => l.handler(ev));
  await new Promise((r) => setTimeout(r, 300));
  const victim = l.child();
  victim.kill('SIGKILL');
  const [out, ms] = await pending;
  assert.deepStrictEqual(out, ev.Records[0].cf.request);
  assert.ok(ms < 3000, `answered after ${ms} ms`);
  // The next event gets a fresh process.
  const next = event('s3_plain.json', '/index.html');
  assert.deepStrictEqual(await l.handler(next), next.Records[0].cf.request);
  assert.notStrictEqual(l.child().pid, victim.pid);
});

test('the binary hanging past the deadline', async (t) => {
  const l = launcher({ service: { address: '127.0.0.1:1', insecure: true }, deadline_ms: 300, launcher_deadline_ms: 800 });
  t.after(() => l.child() && l.child().kill('SIGKILL'));
  const warm = event('s3_plain.json', '/index.html');
  await l.handler(warm);
  const stuck = l.child();
  process.kill(stuck.pid, 'SIGSTOP'); // alive but unresponsive
  const ev = event('s3_plain.json');
  const [out, ms] = await timed(() => l.handler(ev));
  assert.deepStrictEqual(out, ev.Records[0].cf.request);
  assert.ok(ms >= 700 && ms < 800 + 700, `answered after ${ms} ms, the deadline is 800`);
  // The stuck process was replaced.
  assert.deepStrictEqual(await l.handler(warm), warm.Records[0].cf.request);
  assert.notStrictEqual(l.child().pid, stuck.pid);
});

test('an event the adapter cannot route', async (t) => {
  // No origin, no bucket: the request must come back exactly as it went in.
  const l = launcher({ service: { address: '127.0.0.1:1', insecure: true } });
  t.after(() => l.child() && l.child().kill());
  const ev = { Records: [{ cf: { request: { uri: '/x.jpg', method: 'GET', headers: {} } } }] };
  assert.deepStrictEqual(await l.handler(ev), ev.Records[0].cf.request);
});
