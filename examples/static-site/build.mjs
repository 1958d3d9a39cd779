// Bundles src/main.jsx into dist/app.js and copies public/ into dist/.
// Everything it writes depends only on the sources: no timestamps, no
// absolute paths, no source maps.
import { build } from "esbuild";
import { cpSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist");
cpSync("public", "dist", { recursive: true });
await build({
  entryPoints: ["src/main.jsx"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2020",
  jsx: "automatic",
  jsxImportSource: "preact",
  legalComments: "none",
  outfile: "dist/app.js",
  logLevel: "info",
});
