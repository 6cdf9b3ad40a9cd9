# Sourced by the scripts in infra/ and tests/ (and read by the Makefile): what they share, in one place.
# Expects ROOT to be the repository root.

# Cargo's build cache lives outside the checkout, so fresh clones (and CI) build incrementally, and
# every script (tests, local deploy, release deploy, benchmark) shares the one cache.
: "${CARGO_TARGET_DIR:=$HOME/.cache/orderflow/target}"
export CARGO_TARGET_DIR

# The Lambda binaries, as infra/template.yaml names them (Metadata.BuildProperties.Binary).
template_binaries() {
  sed -n 's/^ *Binary: *\([A-Za-z0-9_-]*\) *$/\1/p' "$ROOT/infra/template.yaml"
}

# The binary of the function whose logical id is $1.
binary_of() {
  awk -v id="$1" '
    $0 ~ "^  " id ":[ ]*$" { inside = 1; next }
    inside && /^  [A-Za-z0-9]+:[ ]*$/ { exit }
    inside && /^ *Binary:/ { print $2; exit }
  ' "$ROOT/infra/template.yaml"
}
