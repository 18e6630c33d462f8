'use strict';
// Runs one benchmark job through sharp, for the peer comparison in
// TestPeerBenchmark: `node sharp-bench.js SHARP_DIR INPUT WIDTH QUALITY
// CONCURRENCY SECONDS OUT [COPIES]`. Prints one JSON line: operations,
// wall seconds, CPU seconds of this process (user + system), and the last
// output's size; writes the last output to OUT.
//
// Without COPIES every job transforms the same buffer, read once. With it
// (a directory of copies of INPUT) every job does the service's I/O too:
// it reads the next copy from its file into a fresh buffer and writes its
// output to a new file beside them.
const path = require('node:path');
const fs = require('node:fs');
const [sharpDir, input, width, quality, conc, seconds, out, copiesDir] = process.argv.slice(2);
const sharp = require(path.join(sharpDir, 'node_modules', 'sharp'));
sharp.cache(false); // as the service: no operation cache
sharp.concurrency(1); // one libvips thread per operation, one operation per worker
const data = fs.readFileSync(input);
const copies = copiesDir ? fs.readdirSync(copiesDir).filter((f) => f.endsWith('.jpg')).sort().map((f) => path.join(copiesDir, f)) : [];
const w = Number(width);
let calls = 0;

function pipeline(source) {
  let p = sharp(source, { failOn: 'warning' }).rotate();
  if (w > 0) p = p.resize({ width: w, withoutEnlargement: true });
  // The service's JPEG settings: mozjpeg's trellis, deringing, table 5,
  // progressive with optimised scans, chroma 4:2:0 (as below q95).
  return p.jpeg({
    quality: Number(quality), trellisQuantisation: true, overshootDeringing: true, quantisationTable: 5,
    progressive: true, optimiseScans: true, chromaSubsampling: '4:2:0',
  }).toBuffer();
}

async function job() {
  if (copies.length === 0) return pipeline(data);
  const n = calls++;
  const result = await pipeline(await fs.promises.readFile(copies[n % copies.length]));
  await fs.promises.writeFile(path.join(copiesDir, `out-${process.pid}-${n}.out`), result);
  return result;
}

(async () => {
  await job(); // warm up
  const cpu0 = process.cpuUsage();
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(Number(seconds) * 1e9));
  let ops = 0;
  let last;
  const worker = async () => {
    while (process.hrtime.bigint() < deadline) {
      last = await job();
      ops++;
    }
  };
  await Promise.all(Array.from({ length: Number(conc) }, worker));
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  fs.writeFileSync(out, last);
  console.log(JSON.stringify({ ops, wall, cpu: (cpu.user + cpu.system) / 1e6, bytes: last.length, libvips: sharp.versions.vips }));
})().catch((e) => { console.error(e); process.exit(1); });
