'use strict';
// Runs one benchmark job through sharp, for the peer comparison in
// TestPeerBenchmark: `node sharp-bench.js SHARP_DIR INPUT WIDTH QUALITY
// CONCURRENCY SECONDS OUT`. Prints one JSON line: operations, wall seconds,
// CPU seconds of this process (user + system), and the last output's size;
// writes the last output to OUT.
const path = require('node:path');
const fs = require('node:fs');
const [sharpDir, input, width, quality, conc, seconds, out] = process.argv.slice(2);
const sharp = require(path.join(sharpDir, 'node_modules', 'sharp'));
sharp.cache(false); // as the service: no operation cache
sharp.concurrency(1); // one libvips thread per operation, one operation per worker
const data = fs.readFileSync(input);
const w = Number(width);

function job() {
  let p = sharp(data, { failOn: 'warning' }).rotate();
  if (w > 0) p = p.resize({ width: w, withoutEnlargement: true });
  // The service's JPEG settings: mozjpeg's trellis, deringing, table 5,
  // progressive with optimised scans, chroma 4:2:0 (as below q95).
  return p.jpeg({
    quality: Number(quality), trellisQuantisation: true, overshootDeringing: true, quantisationTable: 5,
    progressive: true, optimiseScans: true, chromaSubsampling: '4:2:0',
  }).toBuffer();
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
