# Sourced by the measuring scripts, from the repository's root: sets `bin` to $GATEWATCH_BIN,
# or to the release binary (built first), and `tmp` to a scratch folder removed on exit.
if [[ -n ${GATEWATCH_BIN:-} ]]; then
  bin=$GATEWATCH_BIN
else
  cargo build --release --locked --bin gatewatch
  bin=target/release/gatewatch
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
