#!/bin/sh
# Install the portal's npm packages from the lock file and copy the files the pages load into
# ../static/vendor (committed, so installing loopml needs no Node). Run by `make assets`.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
out=../static/vendor
mkdir -p "$out"
# package, file inside it, name under static/vendor
files="htmx.org dist/htmx.min.js htmx.min.js
uplot dist/uPlot.iife.min.js uPlot.iife.min.js
uplot dist/uPlot.min.css uPlot.min.css
swagger-ui-dist swagger-ui-bundle.js swagger-ui-bundle.js
swagger-ui-dist swagger-ui.css swagger-ui.css
htmx.org LICENSE htmx.LICENSE
swagger-ui-dist LICENSE swagger-ui.LICENSE
uplot LICENSE uPlot.LICENSE"
echo "$files" | while read -r package file name; do
  cp "node_modules/$package/$file" "$out/$name"
done
# Where each vendored file came from: its package's version and tarball integrity as the lock
# gives them (npm ci checked the tarball against it) and the file's own SHA-512, so a unit
# test (tests/unit/portal/test_foundation.py) can tie every committed file to the lock.
echo "$files" | OUT="$out" node -e '
const fs = require("fs"), crypto = require("crypto");
const lock = require("./package-lock.json");
const found = {};
for (const line of fs.readFileSync(0, "utf8").trim().split("\n")) {
  const [pkg, file, name] = line.split(" ");
  const entry = lock.packages["node_modules/" + pkg];
  const digest = crypto.createHash("sha512").update(fs.readFileSync(process.env.OUT + "/" + name));
  found[name] = {package: pkg, version: entry.version, integrity: entry.integrity, file: file,
                 sha512: "sha512-" + digest.digest("base64")};
}
fs.writeFileSync(process.env.OUT + "/vendored.json", JSON.stringify(found, null, 2) + "\n");
'
echo "vendored: $(ls "$out" | tr '\n' ' ')"
