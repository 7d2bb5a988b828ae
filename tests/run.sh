#!/usr/bin/env bash
# The test command: emulators up, lint, every test against embedded and emulated backends,
# emulators down (whatever happens).
#
#   bash tests/run.sh                      # S3 + KMS on LocalStack, DynamoDB on moto
#   SKYE_EMULATORS=moto bash tests/run.sh  # everything on moto
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

mode=()
if [[ "${SKYE_EMULATORS:-}" == "moto" ]]; then mode=(--all-moto); fi

step "formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "building tests"
cargo test --workspace --locked --no-run

step "installing emulators"
bash localstack/emulators.sh install "${mode[@]}"

trap 'bash localstack/emulators.sh stop || true' EXIT INT TERM
step "starting emulators"
bash localstack/emulators.sh start "${mode[@]}"
# shellcheck source=/dev/null
source target/emulators/env.sh
echo "emulators: $SKYE_TEST_EMULATOR_SET (S3 $AWS_ENDPOINT_URL_S3, KMS $AWS_ENDPOINT_URL_KMS, DynamoDB $AWS_ENDPOINT_URL_DYNAMODB)"
target/emulators/venv-moto/bin/python localstack/smoke-test.py

step "tests"
cargo test --workspace --locked -- --test-threads="${SKYE_TEST_THREADS:-4}"

step "done"
