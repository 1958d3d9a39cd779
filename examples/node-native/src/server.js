// An HTTP service that answers every request with the native addon's
// checksum of the path. PORT (default 8080) picks the port.
"use strict";
const http = require("node:http");
const ms = require("ms");
const { fnv1a } = require("./checksum.node");

const started = Date.now();
const port = Number(process.env.PORT || 8080);

const server = http.createServer((req, res) => {
  const body = JSON.stringify({
    path: req.url,
    fnv1a: fnv1a(req.url),
    uptime: ms(Date.now() - started),
    user: process.getuid(),
  });
  res.writeHead(200, { "content-type": "application/json" });
  res.end(body + "\n");
});

server.listen(port, () => {
  console.log(`listening on ${port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
