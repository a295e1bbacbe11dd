#!/usr/bin/env bash
# Builds the HTML documentation of the library modules with the toolchain's own `docc`, without any
# package dependency, and fails on any warning.
#
# For each module of the table below, in order:
#   1. symbol graphs, from the compiler (`swift build -Xswiftc -emit-symbol-graph ...`);
#   2. every public symbol declared in our sources must have a doc comment;
#   3. every top-level public symbol must be curated (linked as ``Name``) in the module's catalog,
#      Sources/<Module>/<Module>.docc;
#   4. `docc convert --warnings-as-errors`, with the archives of the modules it depends on, so that
#      its pages can link to theirs (``/Pmap/PVOwner``);
# then every ```swift sample of the catalogs and of README.md must appear verbatim in a test under
# Tests/ (so that it is compiled and run by `swift test`), and
# `docc merge` combines the archives into one with a landing page linking the modules.
#
# Usage: Scripts/build-docs.sh [--allow-missing-catalog MODULE]... [--output DIR]
#   --allow-missing-catalog MODULE  build MODULE from its doc comments alone when its catalog does
#                                   not exist yet (said loudly; checks 2 and 4 still apply).
#                                   Also read from $DOCS_ALLOW_MISSING_CATALOG (space-separated).
#   --output DIR                    where the archives go (default .build-docs/archives).
# Preview one module: docc preview Sources/Pmap/Pmap.docc --additional-symbol-graph-dir
#   .build-docs/symbol-graphs/Pmap (after a run).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/opt/swift/usr/bin:$PATH
start=$SECONDS

# The documented modules, in dependency order: module, then the modules its docs link to.
# A new module is one line here (and its catalog).
modules=(
  "Pmap"
  "PmapNative Pmap"
  "PmapEPT Pmap"
  "UVMLite Pmap PmapEPT PmapNative"
)

allow_missing=" ${DOCS_ALLOW_MISSING_CATALOG:-} "
output=.build-docs/archives
while [ $# -gt 0 ]; do
  case "$1" in
    --allow-missing-catalog) allow_missing+=" $2 "; shift 2 ;;
    --output) output=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "build-docs: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v docc >/dev/null || { echo "build-docs: docc not found (expected in /opt/swift/usr/bin)" >&2; exit 1; }
command -v jq >/dev/null || { echo "build-docs: jq not found" >&2; exit 1; }

scratch=.build-docs
graphs="$PWD/$scratch/symbol-graphs"
mkdir -p "$graphs" "$output"
rm -rf "${output:?}"/*.doccarchive

failures=0
warnings=0
without_catalog=""
for row in "${modules[@]}"; do
  read -r module dependencies <<<"$row"
  echo "--- $module"

  # 1. Symbol graphs. The directory is stable so that an up-to-date build keeps its graphs (the
  # compiler writes them only when it emits the module).
  build_log=$(mktemp)
  if ! swift build --scratch-path "$scratch" --target "$module" \
    -Xswiftc -emit-symbol-graph -Xswiftc -emit-symbol-graph-dir -Xswiftc "$graphs/all" \
    -Xswiftc -emit-extension-block-symbols >"$build_log" 2>&1; then
    cat "$build_log"
    echo "build-docs: $module does not build" >&2
    exit 1
  fi
  rm -f "$build_log"
  module_graphs="$graphs/$module"
  rm -rf "$module_graphs" && mkdir -p "$module_graphs"
  cp "$graphs/all/$module.symbols.json" "$module_graphs/"
  cp "$graphs/all/$module"@*.symbols.json "$module_graphs/" 2>/dev/null || true

  # 2. Every public symbol declared in our sources has a doc comment (synthesized members, which
  # have no source location, document themselves through their protocols).
  undocumented=$(jq -r '.symbols[] | select(.location != null and .docComment == null and .kind.identifier != "swift.extension")
      | "\(.location.uri | sub("^file://"; "") | sub("^.*/Sources/"; "Sources/")):\(.location.position.line + 1): \(.pathComponents | join("."))"' \
    "$module_graphs"/*.symbols.json)
  if [ -n "$undocumented" ]; then
    echo "error: public symbols of $module without a doc comment:"
    echo "$undocumented" | sed 's/^/  /'
    failures=$((failures + $(echo "$undocumented" | wc -l)))
  fi

  # 3. Catalog, and curation of every top-level symbol.
  catalog="Sources/$module/$module.docc"
  catalog_args=()
  if [ -d "$catalog" ]; then
    catalog_args=("$catalog")
    uncurated=""
    for name in $(jq -r '.symbols[] | select(.pathComponents | length == 1) | .pathComponents[0]' \
      "$module_graphs/$module.symbols.json" | sort -u); do
      grep -rqE -- "\`\`($module/)?$name(\`\`|/|-)" "$catalog" || uncurated+=" $name"
    done
    if [ -n "$uncurated" ]; then
      echo "error: top-level symbols of $module not curated in $catalog:$uncurated"
      failures=$((failures + $(echo "$uncurated" | wc -w)))
    fi
  elif [[ "$allow_missing" == *" $module "* ]]; then
    echo "NOTE: $catalog does not exist: $module is built from its doc comments only (allowed by --allow-missing-catalog)"
    without_catalog+=" $module"
  else
    echo "error: $catalog does not exist (pass --allow-missing-catalog $module to build without it)"
    failures=$((failures + 1))
    continue
  fi

  # 4. Convert; every warning is an error.
  dependency_args=()
  missing_dependencies=""
  for dependency in $dependencies; do
    [ -d "$output/$dependency.doccarchive" ] || missing_dependencies+=" $dependency"
    dependency_args+=(--dependency "$output/$dependency.doccarchive")
  done
  if [ -n "$missing_dependencies" ]; then
    echo "error: $module not converted: the documentation of$missing_dependencies failed"
    failures=$((failures + 1))
    continue
  fi
  log=$(mktemp)
  if ! docc convert "${catalog_args[@]}" --additional-symbol-graph-dir "$module_graphs" \
    --fallback-display-name "$module" --fallback-bundle-identifier "org.swift-pmap.$module" \
    --output-path "$output/$module.doccarchive" --enable-experimental-external-link-support \
    "${dependency_args[@]}" --warnings-as-errors >"$log" 2>&1; then
    failures=$((failures + 1))
  fi
  count=$(grep -cE '^(warning|error):' "$log" || true)
  warnings=$((warnings + count))
  grep -vE '^$|^Finished building documentation|^Generated documentation archive' "$log" || true
  rm -f "$log"
  echo "$module: $count diagnostics"
done

# 5. Every ```swift sample of the catalogs and of README.md is compiled and run by a test: it must
# appear verbatim (up to indentation) in a file under Tests/ (Tests/PmapTests/ReadmeSampleTests.swift).
echo "--- samples"
normalise() { sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$@"; }
tests_text=$(find Tests -name '*.swift' -print0 | sort -z | xargs -0 cat | normalise)
samples=0
for file in README.md Sources/*/*.docc/*.md; do
  [ -f "$file" ] || continue
  blocks=$(mktemp -d)
  awk -v dir="$blocks" '
    /^```swift[[:space:]]*$/ { inblock = 1; f = sprintf("%s/%05d", dir, NR + 1); next }
    /^```/ && inblock { inblock = 0; close(f); next }
    inblock { print > f }
  ' "$file"
  for block in "$blocks"/*; do
    [ -e "$block" ] || continue
    samples=$((samples + 1))
    if [[ "$tests_text" != *"$(normalise "$block")"* ]]; then
      echo "error: $file:$((10#${block##*/})): a swift sample that no test compiles (copy it verbatim into one under Tests/)"
      failures=$((failures + 1))
    fi
  done
  rm -rf "$blocks"
done
echo "samples: $samples checked against Tests/"

if [ "$failures" -eq 0 ]; then
  archives=()
  for row in "${modules[@]}"; do
    read -r module _ <<<"$row"
    [ -d "$output/$module.doccarchive" ] && archives+=("$output/$module.doccarchive")
  done
  rm -rf "$output/swift-pmap.doccarchive"
  docc merge "${archives[@]}" --synthesized-landing-page-name swift-pmap \
    --synthesized-landing-page-kind Package --output-path "$output/swift-pmap.doccarchive" ||
    failures=$((failures + 1))
fi

echo "docs: ${#modules[@]} modules, $warnings docc diagnostics, $failures failures, $((SECONDS - start))s"
echo "archives: $output (combined: $output/swift-pmap.doccarchive)"
[ -z "$without_catalog" ] || echo "NOTE: built without a catalog (allowed):$without_catalog"
[ "$failures" -eq 0 ] && [ "$warnings" -eq 0 ]
