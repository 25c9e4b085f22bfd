#!/usr/bin/env bash
# Rebuild dvc_plots/offline.html: DVC's plot page with vega, vega-lite and vega-embed inlined, so
# `dvc plots show` / `dvc plots diff` render without a network (DVC's default page loads them
# from a CDN and renders blank offline). .dvc/config points plots.html_template at it.
# Needs npm (registry access) only when rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSIONS=(vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "${VERSIONS[@]}" >/dev/null && for f in *.tgz; do
  mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
{
  cat <<HEAD
<!DOCTYPE html>
<!-- DVC plots page with ${VERSIONS[*]} inlined (BSD-3-Clause, (c) University of Washington
     Interactive Data Lab). Built by scripts/build_plots_template.sh; do not edit by hand. -->
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
HEAD
  for pkg in vega-5.33.1/package/build/vega.min.js vega-lite-5.23.0/package/build/vega-lite.min.js \
             vega-embed-6.29.0/package/build/vega-embed.min.js; do
    printf '<script type="text/javascript">\n'
    cat "$work/$pkg"
    printf '\n</script>\n'
  done
  cat <<'TAIL'
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
TAIL
} >dvc_plots/offline.html
echo "wrote dvc_plots/offline.html ($(wc -c <dvc_plots/offline.html) bytes)"
