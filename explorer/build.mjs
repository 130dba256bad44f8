// Bundles explorer/src into the package's static folder (sdk/node/explorer/static), which is
// committed: a node serves the page with no build step on install and nothing from a CDN.
import { copyFileSync } from "node:fs";
import { build } from "esbuild";

const out = "sdk/node/explorer/static";
await build({
  entryPoints: ["explorer/src/app.js"],
  bundle: true,
  format: "iife",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  outfile: `${out}/app.js`,
});
copyFileSync("explorer/index.html", `${out}/index.html`);
copyFileSync("explorer/style.css", `${out}/style.css`);
