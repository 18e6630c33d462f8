'use strict';
// Lambda@Edge launcher for the imgedge edge adapter (origin-request).
// Lambda@Edge runs only Node.js or Python, so the adapter's logic is a Go
// binary packaged beside this file. The launcher starts it once per execution
// environment, sends one event per line on its stdin and reads one request
// per line from its stdout. If the binary is missing, dead or slower than the
// deadline, the viewer's request goes to the origin unchanged, and a fresh
// process is started for the next event. No dependencies.
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const BIN = path.join(__dirname, 'imgedge-edge');
const CONFIG = path.join(__dirname, 'config.json');
const DEADLINE_MS = (() => {
  try { return JSON.parse(fs.readFileSync(CONFIG, 'utf8')).launcher_deadline_ms || 3000; } catch { return 3000; }
})();

let child = null;

function start() {
  const c = spawn(BIN, ['--config', CONFIG], { stdio: ['pipe', 'pipe', 'inherit'] });
  c.waiting = [];
  const stop = () => abandon(c);
  c.on('error', stop).on('exit', stop);
  c.stdin.on('error', stop);
  readline.createInterface({ input: c.stdout }).on('line', (line) => {
    const resolve = c.waiting.shift();
    if (resolve) resolve(line);
  });
  return c;
}

// abandon kills a process and answers its outstanding events with null.
function abandon(c) {
  if (child === c) child = null;
  if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const resolve of c.waiting.splice(0)) resolve(null);
}

function exchange(event) {
  if (!child) child = start();
  const c = child;
  return new Promise((resolve) => {
    const timer = setTimeout(() => abandon(c), DEADLINE_MS);
    c.waiting.push((line) => { clearTimeout(timer); resolve(line); });
    c.stdin.write(JSON.stringify(event) + '\n');
  });
}

exports.handler = async (event) => {
  const request = event.Records[0].cf.request;
  try {
    const out = JSON.parse(await exchange(event));
    if (out && typeof out === 'object' && typeof out.uri === 'string') return out;
  } catch { /* fall through to the unchanged request */ }
  return request;
};

exports.child = () => child; // for tests
