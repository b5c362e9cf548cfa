// A producer written from PROTOCOL.md alone: streams frames to the `server`
// example in sink mode, obeying write()/'drain', then half-closes and checks the summary.
// usage: node node_producer.js HOST:PORT FRAMES [ignore]   (ignore: keep writing when write()
// returns false, the classic bug; for memory comparisons)
'use strict';
const net = require('net');
const [host, port] = process.argv[2].split(':');
const frames = Number(process.argv[3] || 2000);
const ignore = process.argv[4] === 'ignore';

const record = { name: 'node', tags: ['a', 'b'], about: 'z'.repeat(600) };
const payload = Buffer.from(JSON.stringify(Array(50).fill(record)));
// A fresh buffer per frame, as a real producer's data would be (writing one Buffer object
// over and over would queue references, not bytes, and hide the memory cost).
function frame() {
  const f = Buffer.allocUnsafe(4 + payload.length);
  f.writeUInt32BE(payload.length, 0);
  payload.copy(f, 4);
  return f;
}

const sock = net.connect({ host, port: Number(port) });
let sent = 0;
let drains = 0;
let buf = Buffer.alloc(0);
function produce() {
  while (sent < frames) {
    sent++;
    if (!sock.write(frame()) && !ignore) return; // wait for 'drain'
  }
  sock.end();
}
sock.on('connect', produce);
sock.on('drain', () => { drains++; produce(); });
sock.on('data', (d) => { buf = Buffer.concat([buf, d]); });
sock.on('end', () => {
  const n = buf.readUInt32BE(0);
  const reply = JSON.parse(buf.subarray(4, 4 + n).toString());
  const ok = reply.received === frames && reply.bytes === frames * payload.length;
  const peak_rss_kb = Math.round(process.resourceUsage().maxRSS);
  console.log(JSON.stringify({ frames, drains, reply, ok, peak_rss_kb }));
  process.exit(ok ? 0 : 1);
});
sock.on('error', (e) => { console.error(e); process.exit(1); });
