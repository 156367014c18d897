#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Consumer test: builds tests/consumer/project against this uvasync tree as a Meson
# subproject, in two configurations, each configured, built, run, reconfigured, rebuilt and
# run again:
#   system    dependency('uvasync') falls back to subprojects/uvasync; everybody uses the
#             system libuv; the subproject's tests and examples must be off without asking
#   provided  the consumer overrides 'libuv' itself before dependency('uvasync'); uvasync must
#             report the override, and is built static with explicit subproject options
#
#   run.sh SOURCE_ROOT WORK_DIR [meson setup args...]
# Env: CONSUMER_CC / CONSUMER_CXX pick the compilers (the outer build's, from meson.build).
# WORK_DIR is wiped first and left behind for inspection.
set -euo pipefail

if (($# < 2)); then
    echo "usage: $0 SOURCE_ROOT WORK_DIR [meson setup args...]" >&2
    exit 2
fi
src_root=$(cd "$1" && pwd)
work=$2
shift 2
extra_args=("$@")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[[ -n ${CONSUMER_CC:-} ]] && export CC=$CONSUMER_CC
[[ -n ${CONSUMER_CXX:-} ]] && export CXX=$CONSUMER_CXX

step() { printf '\n==== consumer: %s\n' "$*"; }
fail() {
    printf 'consumer: FAILED: %s\n' "$*" >&2
    exit 1
}

rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
project=$work/project
cp -R "$here/project" "$project"
mkdir -p "$project/subprojects"
# A symlink is enough: Meson reads the subproject through it and writes nothing into it.
ln -s "$src_root" "$project/subprojects/uvasync"

echo "consumer: uvasync tree $src_root"
echo "consumer: CC=${CC:-default} CXX=${CXX:-default} extra args: ${extra_args[*]:-none}"

# Fails if the uvasync subproject defined any target under tests/ or examples/.
check_no_subproject_tests() {
    python3 - "$1" "$project/subprojects/uvasync" <<'PY'
import json, os, subprocess, sys
build, sub = sys.argv[1], sys.argv[2]
targets = json.loads(subprocess.run(["meson", "introspect", build, "--targets"],
                                    check=True, capture_output=True, text=True).stdout)
bad = []
for t in targets:
    d = t.get("defined_in", "")
    for part in ("tests", "examples"):
        if d.startswith(os.path.join(sub, part) + os.sep):
            bad.append(f'{t["name"]} ({d})')
if bad:
    print("consumer: uvasync built test/example targets as a subproject:", *bad, sep="\n  ")
    sys.exit(1)
print(f"consumer: no uvasync test or example targets ({len(targets)} targets in all)")
PY
}

run_consumer() {
    local build=$1 out
    if ! out=$("$build/consumer" 2>&1); then
        printf '%s\n' "$out"
        fail "$build/consumer exited non-zero"
    fi
    printf '%s\n' "$out"
    [[ $out == *"consumer: ok"* ]] || fail "$build/consumer did not print 'consumer: ok'"
    # The C API, from the same subproject.
    if ! out=$("$build/consumer_c" 2>&1); then
        printf '%s\n' "$out"
        fail "$build/consumer_c exited non-zero"
    fi
    printf '%s\n' "$out"
    [[ $out == *"consumer-c: ok"* ]] || fail "$build/consumer_c did not print 'consumer-c: ok'"
}

# configure NAME SETUP_ARGS... ; checks the log, then builds and runs
configure_and_check() {
    local name=$1 mode=$2 build=$work/build-$1 log
    shift 2
    log=$work/$name-$mode.log
    if ! meson setup "$@" "$build" "$project" "${extra_args[@]}" >"$log" 2>&1; then
        cat "$log"
        fail "$name: configure ($mode) failed"
    fi
    grep -E '^uvasync\| (Run-time )?[Dd]ependency libuv found' "$log" || fail "$name: uvasync did not look up libuv"
    local overridden=no
    grep -qE '^uvasync\| (Run-time )?[Dd]ependency libuv found: YES .*\(overridden\)' "$log" && overridden=yes
    if [[ $name == provided && $overridden == no ]]; then
        fail "$name: uvasync did not use the consumer's libuv"
    elif [[ $name != provided && $overridden == yes ]]; then
        fail "$name: libuv unexpectedly overridden"
    fi
    check_no_subproject_tests "$build" || fail "$name: subproject tests/examples not disabled"
    meson compile -C "$build" || fail "$name: build after $mode"
    run_consumer "$build"
}

for name in system provided; do
    provide=false
    [[ $name == provided ]] && provide=true
    build=$work/build-$name

    step "$name: meson setup (provide_libuv=$provide)"
    configure_and_check "$name" setup "-Dprovide_libuv=$provide"

    if [[ $name == provided ]]; then
        # default_library=static reached the subproject: no shared libuvasync was built.
        [[ -n $(find "$build/subprojects" -name 'libuvasync.a') ]] ||
            fail "$name: no static libuvasync.a"
        if [[ -n $(find "$build/subprojects" -name 'libuvasync.so*') ]]; then
            fail "$name: a shared libuvasync was built"
        fi
    fi

    step "$name: meson setup --reconfigure"
    configure_and_check "$name" reconfigure --reconfigure "-Dprovide_libuv=$provide"
done

# The installed library: install uvasync into a prefix, then build the C consumer with nothing
# but pkg-config (the way a plain Makefile project would).
step "installed: meson install, then cc \$(pkg-config --cflags --libs uvasync-c)"
prefix=$work/prefix
installed_build=$work/build-installed
if ! meson setup "$installed_build" "$src_root" --prefix "$prefix" --libdir lib \
    -Dtests=disabled -Dexamples=disabled -Dbench=disabled "${extra_args[@]}" \
    >"$work/installed-setup.log" 2>&1; then
    cat "$work/installed-setup.log"
    fail "installed: configure failed"
fi
meson install -C "$installed_build" >"$work/installed-install.log" 2>&1 ||
    { cat "$work/installed-install.log"; fail "installed: meson install failed"; }
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
pkg-config --exists uvasync-c || fail "installed: no uvasync-c.pc"
echo "consumer: pkg-config uvasync-c: $(pkg-config --cflags --libs uvasync-c)"
# libuvasync_c.so needs libuvasync.so: outside the loader's default paths the linker finds it
# through LD_LIBRARY_PATH, like the program at run time.
export LD_LIBRARY_PATH=$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -pedantic -Werror \
    "$here/project/main_c.c" -o "$work/consumer_c_installed" \
    $(pkg-config --cflags --libs uvasync-c) || fail "installed: the C consumer did not build"
out=$("$work/consumer_c_installed" 2>&1) ||
    { printf '%s\n' "$out"; fail "installed: the C consumer exited non-zero"; }
printf '%s\n' "$out"
[[ $out == *"consumer-c: ok"* ]] || fail "installed: the C consumer did not print 'consumer-c: ok'"

step "all configurations passed"
