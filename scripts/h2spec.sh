#!/usr/bin/env bash
# h2spec.sh builds h2spec (github.com/summerwind/h2spec), the HTTP/2 conformance
# suite that proxy's TestH2spec runs against the relay, into
# $HOPTRACE_CACHE/bin/h2spec, once per version.
#
#   scripts/h2spec.sh          build it unless it is there already
#   scripts/h2spec.sh path     print the binary's path
#
# Environment (all optional):
#   HOPTRACE_CACHE   cache root (default ~/.cache/hoptrace)
#   H2SPEC_VERSION   Go module version (v2.2.1+incompatible is h2spec 2.2.1)
set -euo pipefail

H2SPEC_VERSION=${H2SPEC_VERSION:-v2.2.1+incompatible}
CACHE=${HOPTRACE_CACHE:-$HOME/.cache/hoptrace}
BIN=$CACHE/bin/h2spec

log() { echo "h2spec.sh: $*" >&2; }

if [[ ${1:-} == path ]]; then
	echo "$BIN"
	exit 0
fi
if [[ -x $BIN && "$(cat "$BIN.version" 2>/dev/null)" == "$H2SPEC_VERSION" ]]; then
	exit 0
fi
mkdir -p "$CACHE/bin"
work=$(mktemp -d "$CACHE/h2spec-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# h2spec 2.2.1 predates Go modules (its versions come from dep's Gopkg.lock):
# the wrapper pins its dependencies, so that a rebuild is the same program
# rather than whatever is latest that day.
cat >"$work/go.mod" <<MOD
module hoptrace.local/h2spec-build

go 1.22

require (
	github.com/summerwind/h2spec $H2SPEC_VERSION
	github.com/fatih/color v1.19.0
	github.com/spf13/cobra v1.10.2
	golang.org/x/net v0.62.0
)
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/summerwind/h2spec/cmd/h2spec"
GO
log "building github.com/summerwind/h2spec/cmd/h2spec@$H2SPEC_VERSION"
(
	cd "$work"
	export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false"
	go mod tidy 2>"$work/tidy.log" || { cat "$work/tidy.log" >&2; exit 1; }
	CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" github.com/summerwind/h2spec/cmd/h2spec
)
mv "$BIN.tmp" "$BIN"
echo "$H2SPEC_VERSION" >"$BIN.version"
log "built $BIN"
