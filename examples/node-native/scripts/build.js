// Puts what the runtime image needs into dist/: the server and the
// compiled addon next to it.
"use strict";
const fs = require("node:fs");

fs.rmSync("dist", { recursive: true, force: true });
fs.mkdirSync("dist");
fs.copyFileSync("src/server.js", "dist/server.js");
fs.copyFileSync("build/Release/checksum.node", "dist/checksum.node");
console.log("dist/: server.js, checksum.node");
