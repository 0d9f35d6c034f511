# shellcheck shell=bash
# Sourced, never run (by build-tests.sh and ../emulator/test-arm64.sh).
# cargo_profile ARGS...: the profile options among cargo arguments (--release, --profile NAME,
# --profile=NAME) into the array `profile`, so that a second cargo command builds in the same
# profile as the first.
cargo_profile() {
    profile=()
    local args=("$@") i
    for ((i = 0; i < ${#args[@]}; i++)); do
        case "${args[$i]}" in
            --release) profile=(--release) ;;
            --profile=*) profile=("${args[$i]}") ;;
            --profile) profile=(--profile "${args[$((i + 1))]:-}") ;;
        esac
    done
}
