#!/usr/bin/env bash
# Refreshes the vendored uPlot (the console's charting library) from the npm
# registry. The files are committed, so building DMQ never needs npm; run this
# only to change the version, then check the console and commit the result:
#
#   internal/console/vendor.sh 1.6.32
set -euo pipefail
version=${1:?usage: vendor.sh UPLOT_VERSION (for example 1.6.32)}
dest="$(cd "$(dirname "$0")" && pwd)/assets/vendor/uplot"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && npm pack --silent "uplot@$version" >/dev/null && tar xzf uplot-*.tgz)
mkdir -p "$dest"
cp "$tmp/package/dist/uPlot.esm.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" "$dest/"
cat >"$dest/VERSION" <<NOTE
uPlot $version (https://github.com/leeoniya/uPlot), MIT licence (LICENSE).
Fetched from the npm registry with: npm pack uplot@$version
Files: dist/uPlot.esm.js, dist/uPlot.min.css, LICENSE. Refresh: internal/console/vendor.sh VERSION
NOTE
echo "uPlot $version vendored into $dest"
