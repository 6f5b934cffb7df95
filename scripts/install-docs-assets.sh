#!/usr/bin/env bash
# The documentation site's Mermaid (MIT), pinned, so the site draws its diagrams without a CDN:
# npm's `mermaid` package ships the one-file browser build; it goes into the virtualenv
# (<venv>/share/vocalis-docs/), where the site's hook (src/vocalis/docs_gen/site_hooks.py)
# ships it with the site. Without it the theme would fetch Mermaid when a page is viewed;
# tests/unit/test_docs_site.py fails then. Idempotent: skipped when the pinned file is there.
set -euo pipefail
PY="${1:-.venv/bin/python}"
VERSION=11.17.2  # the major version the Material theme expects
SHA256=581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8
DEST="$("$PY" -c 'import sys; print(sys.prefix)')/share/vocalis-docs"
if [ -f "$DEST/mermaid.min.js" ] && echo "$SHA256  $DEST/mermaid.min.js" | sha256sum -c --quiet 2>/dev/null; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm not found: the docs site cannot ship Mermaid (install Node.js and npm)" >&2
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" "mermaid@$VERSION" >/dev/null
tar -xzf "$tmp/mermaid-$VERSION.tgz" -C "$tmp" package/dist/mermaid.min.js package/LICENSE
echo "$SHA256  $tmp/package/dist/mermaid.min.js" | sha256sum -c --quiet
mkdir -p "$DEST"
cp "$tmp/package/dist/mermaid.min.js" "$DEST/mermaid.min.js"
cp "$tmp/package/LICENSE" "$DEST/mermaid.LICENSE"
echo "docs: Mermaid $VERSION in $DEST" >&2
