# SPDX-License-Identifier: MIT
# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: installs the Debian 12 packages uvasync needs, and
# only the missing ones. Source it, then call `uvasync_install_deps`.
#
# Checking costs about 0.1 s when everything is there. When something is missing it runs
# `apt-get update` once and installs quietly (about 10 s on a fresh machine).
# Root is required for that part; otherwise sudo is used (non-interactively when there is no
# terminal, as in CI).

# cmake is here because Debian's doctest-dev ships only a CMake config: without cmake, Meson's
# dependency('doctest') finds nothing (the package has no pkg-config file; docs/toolchain.md, section 4). libclang-rt-14-dev
# holds clang's sanitizer runtimes. libhttp-parser-dev is the HTTP parser of examples/servers.
# clang-format and clang-tidy-14 are for scripts/test's format and tidy checks.
UVASYNC_APT_PACKAGES=(meson ninja-build pkg-config g++ clang-14 libclang-rt-14-dev libuv1-dev
    doctest-dev cmake libhttp-parser-dev clang-format clang-tidy-14)

# For the benchmarks only (bench/README.md): the Boost.Asio and uvloop comparisons, wrk, and GNU
# time for peak RSS. Installed by `uvasync_install_deps --bench` (bench/run, and scripts/test
# when it builds the bench). The bench smoke test skips a comparison whose package is missing.
# Node.js 20 is not in Debian 12 (it has 18); bench/run skips Node when `node` is missing.
UVASYNC_BENCH_APT_PACKAGES=(libboost1.81-dev python3-uvloop wrk time)

# For scripts/soak (and scripts/test's soak step): wrk drives the HTTP example server.
UVASYNC_SOAK_APT_PACKAGES=(wrk)

# For scripts/test --pass valgrind.
UVASYNC_VALGRIND_APT_PACKAGES=(valgrind)

# Prints the packages from "$@" that are not installed, one per line.
uvasync_missing_packages() {
    local p
    for p in "$@"; do
        if [[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null)" != "ii " ]]; then
            printf '%s\n' "$p"
        fi
    done
}

# Installs whatever of UVASYNC_APT_PACKAGES is missing; with --bench, also of
# UVASYNC_BENCH_APT_PACKAGES; with --soak, of UVASYNC_SOAK_APT_PACKAGES; with --valgrind, of
# UVASYNC_VALGRIND_APT_PACKAGES.
uvasync_install_deps() {
    local -a want=("${UVASYNC_APT_PACKAGES[@]}") missing=() sudo=()
    local arg
    for arg in "$@"; do
        case "$arg" in
        --bench) want+=("${UVASYNC_BENCH_APT_PACKAGES[@]}") ;;
        --soak) want+=("${UVASYNC_SOAK_APT_PACKAGES[@]}") ;;
        --valgrind) want+=("${UVASYNC_VALGRIND_APT_PACKAGES[@]}") ;;
        esac
    done
    if ! command -v dpkg-query >/dev/null 2>&1; then
        echo "deps: dpkg-query not found; this script expects Debian 12. Install by hand:" >&2
        echo "deps:   ${want[*]}" >&2
        return 1
    fi
    mapfile -t missing < <(uvasync_missing_packages "${want[@]}")
    if ((${#missing[@]} == 0)); then
        echo "deps: all required packages are installed"
        return 0
    fi
    if ((EUID != 0)); then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "deps: need root (or sudo) to install: ${missing[*]}" >&2
            return 1
        fi
        sudo=(sudo)
        [[ -t 0 ]] || sudo+=(-n) # no terminal: fail instead of waiting for a password
    fi
    echo "deps: installing ${missing[*]}"
    local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq
        -o DPkg::Lock::Timeout=600)
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/uvasync-apt.XXXXXX")
    if ! { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends "${missing[@]}"; } \
        >"$log" 2>&1 </dev/null; then
        echo "deps: apt-get failed:" >&2
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    mapfile -t missing < <(uvasync_missing_packages "${want[@]}")
    if ((${#missing[@]} != 0)); then
        echo "deps: still missing after apt-get: ${missing[*]}" >&2
        return 1
    fi
    echo "deps: done"
}
