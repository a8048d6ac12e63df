#!/usr/bin/env bash
# Fetch the JavaScript the rendered pages need, from the npm registry, into _vendor/ (git-ignored),
# so that the built book loads nothing from a CDN: MathJax 3, require.js and the ipywidgets
# embed manager, and Vega (for the live figures). Idempotent: does nothing when the files are already there.
set -euo pipefail
cd "$(dirname "$0")/.."
MATHJAX=mathjax@3.2.2
REQUIREJS=requirejs@2.3.8
MANAGER=@jupyter-widgets/html-manager@1.0.6
VEGA=vega@6.4.0
VEGALITE=vega-lite@6.4.3
EMBED=vega-embed@7.3.0
dest=_vendor
if [[ -f $dest/mathjax/tex-chtml.js && -f $dest/require.js && -f $dest/html-manager/embed-amd.js
      && -f $dest/vega/vega.min.js && -f $dest/vega/vega-lite.min.js && -f $dest/vega/vega-embed.min.js ]]; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$MATHJAX" "$REQUIREJS" "$MANAGER" "$VEGA" "$VEGALITE" "$EMBED" >/dev/null)
rm -rf "$dest" && mkdir -p "$dest/mathjax" "$dest/html-manager" "$dest/vega"
for tgz in "$tmp"/*.tgz; do mkdir -p "$tmp/x" && tar xzf "$tgz" -C "$tmp/x" && mv "$tmp/x/package" "$tmp/$(basename "$tgz" .tgz)" && rm -rf "$tmp/x"; done
cp -r "$tmp"/mathjax-*/es5/. "$dest/mathjax/"
cp "$tmp"/requirejs-*/require.js "$dest/require.js"
cp -r "$tmp"/jupyter-widgets-html-manager-*/dist/. "$dest/html-manager/"
# Vega, Vega-Lite and vega-embed for the figures that compute in the page (attnlab.live)
cp "$tmp"/vega-[0-9]*/build/vega.min.js "$tmp"/vega-lite-*/build/vega-lite.min.js \
   "$tmp"/vega-embed-*/build/vega-embed.min.js "$dest/vega/"
find "$dest" -name '*.map' -delete
echo "fetched $MATHJAX $REQUIREJS $MANAGER $VEGA $VEGALITE $EMBED into $dest/"
