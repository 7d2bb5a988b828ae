#!/usr/bin/env bash
# The test command: lint, build, validate the SAM template, build the arm64 Lambda binaries,
# start the AWS emulators, run every test against embedded and emulated backends (including
# the real function binaries under `cargo lambda watch`), stop the emulators whatever happens.
#
#   bash tests/run.sh                      # S3 + KMS on LocalStack, DynamoDB on moto
#   SKYE_EMULATORS=moto bash tests/run.sh  # everything on moto
#   SKYE_SKIP_ARM64=1 bash tests/run.sh    # skip the release arm64 build (quicker local runs)
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

step "installing tools (SAM CLI, cfn-lint, cargo-lambda, zig) and emulators"
tools_bin="$(bash localstack/emulators.sh tools)"
export PATH="$tools_bin:$PATH"
bash localstack/emulators.sh install "${mode[@]}"

step "validating template.yaml"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" SAM_CLI_TELEMETRY=0
cfn-lint template.yaml
sam validate --lint --template template.yaml --region "$AWS_DEFAULT_REGION"

if [[ "${SKYE_SKIP_ARM64:-}" != "1" ]]; then
    step "building the Lambda functions for arm64 (release)"
    rustup target add aarch64-unknown-linux-gnu
    cargo lambda build --release --arm64 --locked \
        -p skye-fn-create-session -p skye-fn-serve-file -p skye-fn-callback -p skye-fn-editor-page -p skye-fn-health
    for f in create-session serve-file callback editor-page health; do
        ls -l "target/lambda/$f/bootstrap"
    done
fi

trap 'bash localstack/emulators.sh stop || true' EXIT INT TERM
step "starting emulators"
bash localstack/emulators.sh start "${mode[@]}"
# shellcheck source=/dev/null
source target/emulators/env.sh
echo "emulators: $SKYE_TEST_EMULATOR_SET (S3 $AWS_ENDPOINT_URL_S3, KMS $AWS_ENDPOINT_URL_KMS, DynamoDB $AWS_ENDPOINT_URL_DYNAMODB)"
target/emulators/venv-moto/bin/python localstack/smoke-test.py

step "tests"
export SKYE_TEST_CARGO_LAMBDA=1
cargo test --workspace --locked -- --test-threads="${SKYE_TEST_THREADS:-4}"

step "done"
