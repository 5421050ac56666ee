#!/bin/sh
# Install the portal's npm packages from the lock file and copy the files the pages load into
# ../static/vendor (committed, so installing loopml needs no Node). Run by `make assets`.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --ignore-scripts
out=../static/vendor
mkdir -p "$out"
cp node_modules/htmx.org/dist/htmx.min.js "$out/htmx.min.js"
cp node_modules/uplot/dist/uPlot.iife.min.js "$out/uPlot.iife.min.js"
cp node_modules/uplot/dist/uPlot.min.css "$out/uPlot.min.css"
cp node_modules/htmx.org/LICENSE "$out/htmx.LICENSE"
cp node_modules/uplot/LICENSE "$out/uPlot.LICENSE"
echo "vendored: $(ls "$out" | tr '\n' ' ')"
