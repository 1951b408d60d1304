// A Node.js app (one event-loop thread) that does NOT forward trace headers:
// for each request it calls the back end with the same X-Request-Id.
// Arguments: port, back host, back port, max delay in seconds.
'use strict';
const http = require('http');
const [port, backHost, backPort, maxDelay] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true });

function call(rid) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: backHost, port: Number(backPort), path: '/work', agent,
      headers: { 'X-Request-Id': rid } }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve(body));
    });
    req.on('error', reject);
  });
}

const sleep = () => new Promise((r) => setTimeout(r, Math.random() * Number(maxDelay) * 1000));

http.createServer(async (req, res) => {
  const rid = req.headers['x-request-id'] || '';
  const calls = Number(req.headers['x-calls'] || '1');
  const got = [];
  try {
    for (let i = 0; i < calls; i++) {
      await sleep();
      got.push(await call(rid));
    }
  } catch (e) {
    res.writeHead(502);
    res.end(String(e));
    return;
  }
  const out = `front ${rid} ${got.join(',')}`;
  res.writeHead(200, { 'Content-Length': Buffer.byteLength(out) });
  res.end(out);
}).listen(Number(port), '0.0.0.0');
