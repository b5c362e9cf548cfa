// A sink server written from PROTOCOL.md alone, for the `client` example to stream
// into: counts frames and payload bytes, replies {"received":M,"bytes":B} on the client's
// half-close, then closes that connection. Prints "listening on HOST:PORT"; runs until killed.
'use strict';
const net = require('net');
const server = net.createServer({ allowHalfOpen: true }, (sock) => {
  let buf = Buffer.alloc(0);
  let received = 0;
  let bytes = 0;
  sock.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    while (buf.length >= 4) {
      const n = buf.readUInt32BE(0);
      if (buf.length < 4 + n) break;
      JSON.parse(buf.subarray(4, 4 + n).toString());
      received++;
      bytes += n;
      buf = buf.subarray(4 + n);
    }
  });
  sock.on('end', () => {
    const reply = Buffer.from(JSON.stringify({ received, bytes }));
    const out = Buffer.alloc(4 + reply.length);
    out.writeUInt32BE(reply.length, 0);
    reply.copy(out, 4);
    sock.end(out);
  });
});
server.listen(0, '127.0.0.1', () => {
  const a = server.address();
  console.log(`listening on ${a.address}:${a.port}`);
});
