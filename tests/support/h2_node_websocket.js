// A WebSocket over HTTP/2 (RFC 8441) opened by Node.js's own http2 client, for
// tests/integration/test_h2_framework_websockets.py: a client nobody here wrote.
//
// Usage: node h2_node_websocket.js URL [CA_FILE]
// It waits for the server's SETTINGS, checks SETTINGS_ENABLE_CONNECT_PROTOCOL, sends the
// extended CONNECT, then two text messages (masked, as a client's must be), reads the echoes,
// closes with 1000 and prints one JSON line: what it saw. Exit status 0 unless it failed.
// It must never talk to anything but the URL it is given.
"use strict";
const http2 = require("http2");
const fs = require("fs");

const [target, caFile] = process.argv.slice(2);
const url = new URL(target);
const options = caFile ? { ca: fs.readFileSync(caFile) } : {};
const seen = { connectProtocol: null, status: null, messages: [], closeCode: null, ended: false };
const fail = (why) => {
  console.log(JSON.stringify({ ...seen, error: String(why) }));
  process.exit(1);
};
setTimeout(() => fail("timed out"), 15000).unref();

function frame(opcode, payload) {
  const mask = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
  const head = payload.length < 126
    ? Buffer.from([0x80 | opcode, 0x80 | payload.length])
    : Buffer.from([0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ mask[i % 4]));
  return Buffer.concat([head, mask, masked]);
}

function parse(buffer) {
  // Whole frames from a server (unmasked); returns [frames, rest].
  const frames = [];
  while (buffer.length >= 2) {
    let size = buffer[1] & 0x7f;
    let offset = 2;
    if (buffer[1] & 0x80) fail("a server frame was masked");
    if (size === 126) {
      if (buffer.length < 4) break;
      size = buffer.readUInt16BE(2);
      offset = 4;
    }
    if (buffer.length < offset + size) break;
    frames.push({ opcode: buffer[0] & 0x0f, payload: buffer.subarray(offset, offset + size) });
    buffer = buffer.subarray(offset + size);
  }
  return [frames, buffer];
}

const session = http2.connect(url.origin, options);
session.on("error", fail);
session.once("remoteSettings", (settings) => {
  seen.connectProtocol = settings.enableConnectProtocol;
  if (!settings.enableConnectProtocol) fail("no SETTINGS_ENABLE_CONNECT_PROTOCOL");
  const stream = session.request({
    ":method": "CONNECT",
    ":protocol": "websocket",
    ":path": url.pathname,
    ":scheme": url.protocol.slice(0, -1),
    ":authority": url.host,
    "sec-websocket-version": "13",
  }, { endStream: false });
  stream.on("error", fail);
  stream.on("response", (headers) => {
    seen.status = headers[":status"];
    stream.write(frame(0x1, Buffer.from("first from node")));
    stream.write(frame(0x1, Buffer.from("second from node")));
  });
  let rest = Buffer.alloc(0);
  stream.on("data", (chunk) => {
    let frames;
    [frames, rest] = parse(Buffer.concat([rest, chunk]));
    for (const { opcode, payload } of frames) {
      if (opcode === 0x1) {
        seen.messages.push(payload.toString());
        if (seen.messages.length === 2) stream.write(frame(0x8, Buffer.from([0x03, 0xe8])));
      } else if (opcode === 0x8) {
        seen.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : null;
        stream.end();
      }
    }
  });
  stream.on("end", () => {
    seen.ended = true;
  });
  stream.on("close", () => {
    seen.rstCode = stream.rstCode;
    console.log(JSON.stringify(seen));
    session.close();
  });
});
