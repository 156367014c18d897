#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Consumer test. First builds tests/consumer/project against this uvasync tree as a Meson
# subproject, in three configurations, each configured, built, run, reconfigured, rebuilt and
# run again, then installed into a staging directory:
#   system    dependency('uvasync') falls back to subprojects/uvasync; everybody uses the
#             system libuv; the subproject's tests and examples must be off without asking,
#             uvasync is static without asking, and `meson install` installs nothing of it
#   provided  the consumer overrides 'libuv' itself before dependency('uvasync'); uvasync must
#             report the override, and is built static with explicit subproject options
#   shared    the consumer asks for default_library=shared: uvasync is shared and installed
#             (the consumer's installed binary needs it)
# Then installs uvasync on its own into a prefix and uses it the two other ways a user would:
# pkg-config (the .pc states C++20; a C++17 compile stops at one clear #error) and CMake
# (find_package(uvasync) -> uvasync::uvasync, which brings C++20 itself).
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

for name in system provided shared; do
    provide=false
    shared=false
    [[ $name == provided ]] && provide=true
    [[ $name == shared ]] && shared=true
    build=$work/build-$name
    opts=("-Dprovide_libuv=$provide" "-Duvasync_shared=$shared")

    step "$name: meson setup (provide_libuv=$provide uvasync_shared=$shared)"
    configure_and_check "$name" setup "${opts[@]}"

    if [[ $name == shared ]]; then
        [[ -n $(find "$build/subprojects" -name 'libuvasync.so*') ]] ||
            fail "$name: no shared libuvasync was built"
    else
        # Static without asking (system) or when asked (provided): no shared libuvasync.
        [[ -n $(find "$build/subprojects" -name 'libuvasync.a') ]] ||
            fail "$name: no static libuvasync.a"
        if [[ -n $(find "$build/subprojects" -name 'libuvasync.so*') ]]; then
            fail "$name: a shared libuvasync was built"
        fi
    fi

    step "$name: meson setup --reconfigure"
    configure_and_check "$name" reconfigure --reconfigure "${opts[@]}"

    step "$name: meson install (staged)"
    stage=$work/stage-$name
    meson install -C "$build" --destdir "$stage" >"$work/$name-install.log" 2>&1 ||
        { cat "$work/$name-install.log"; fail "$name: meson install"; }
    [[ -n $(find "$stage" -name consumer -type f) ]] || fail "$name: the consumer was not installed"
    installed=$(find "$stage" \( -name 'libuvasync*' -o -name 'uvasync*.pc' -o -path '*/include/uvasync' \
        -o -name 'uvasyncConfig*.cmake' \) -printf '%P\n')
    printf 'consumer: uvasync files installed: %s\n' "${installed:-none}"
    if [[ $name == shared ]]; then
        grep -q 'libuvasync\.so' <<<"$installed" || fail "$name: the shared libuvasync was not installed"
        if grep -qv 'libuvasync' <<<"$installed"; then
            fail "$name: more than the library was installed"
        fi
    else
        [[ -z $installed ]] || fail "$name: a static subproject installed files into the consumer's prefix"
    fi
done

# uvasync on its own, installed into a prefix, as a distribution or `meson install` would.
step "install uvasync into a prefix"
prefix=$work/prefix
meson setup "$work/build-uvasync" "$src_root" --prefix="$prefix" -Dtests=disabled \
    -Dexamples=disabled -Dbench=disabled "${extra_args[@]}" >"$work/uvasync-setup.log" 2>&1 ||
    { cat "$work/uvasync-setup.log"; fail "uvasync: configure"; }
meson compile -C "$work/build-uvasync" >"$work/uvasync-build.log" 2>&1 ||
    { cat "$work/uvasync-build.log"; fail "uvasync: build"; }
meson install -C "$work/build-uvasync" >"$work/uvasync-install.log" 2>&1 ||
    { cat "$work/uvasync-install.log"; fail "uvasync: install"; }

run_consumer_exe() {
    local out
    out=$("$@" 2>&1) || { printf '%s\n' "$out"; fail "$1 exited non-zero"; }
    printf '%s\n' "$out"
    [[ $out == *"consumer: ok"* ]] || fail "$1 did not print 'consumer: ok'"
}

step "pkg-config"
pc=$(find "$prefix" -name uvasync.pc | head -1)
[[ -n $pc ]] || fail "pkg-config: no uvasync.pc installed"
pcdir=$(dirname "$pc")
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
grep -E '^Description: .*C\+\+20.*-std=c\+\+20' "$pc" ||
    fail "pkg-config: the description does not state the C++20 requirement"
[[ $(pkg-config --variable=cxx_std uvasync) == c++20 ]] || fail "pkg-config: cxx_std is not c++20"
read -r -a cxx_cmd <<<"${CXX:-c++}"
read -r -a pc_flags <<<"$(pkg-config --cflags --libs uvasync)"
"${cxx_cmd[@]}" -std=c++20 "$here/project/main.cpp" "${pc_flags[@]}" -o "$work/pc-consumer" ||
    fail "pkg-config: building with -std=c++20 failed"
run_consumer_exe "$work/pc-consumer"
# Without C++20: one clear error that says what to do, and the compiler stops there.
if "${cxx_cmd[@]}" -std=c++17 -c "$here/project/main.cpp" "${pc_flags[@]}" -o "$work/c17.o" \
    >"$work/c17.log" 2>&1; then
    fail "pkg-config: a C++17 compile of a uvasync program succeeded"
fi
cat "$work/c17.log"
grep -q 'uvasync needs C++20 with coroutines: compile with -std=c++20' "$work/c17.log" ||
    fail "C++17: no clear error naming -std=c++20"
errors=$(grep -c 'error' "$work/c17.log" || true)
((errors <= 4)) || fail "C++17: $errors error lines, expected only the #error and the stop"

step "CMake: find_package(uvasync)"
cmake_build=$work/build-cmake
cmake -S "$here/cmake" -B "$cmake_build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CXX_COMPILER="${cxx_cmd[0]}" >"$work/cmake-configure.log" 2>&1 ||
    { cat "$work/cmake-configure.log"; fail "cmake: configure (find_package(uvasync))"; }
cmake --build "$cmake_build" >"$work/cmake-build.log" 2>&1 ||
    { cat "$work/cmake-build.log"; fail "cmake: build against uvasync::uvasync"; }
run_consumer_exe "$cmake_build/consumer"

step "pkg-config: the C API (cc \$(pkg-config --cflags --libs uvasync-c))"
pkg-config --exists uvasync-c || fail "pkg-config: no uvasync-c.pc installed"
echo "consumer: pkg-config uvasync-c: $(pkg-config --cflags --libs uvasync-c)"
# A shared libuvasync_c.so needs libuvasync.so: outside the loader's default paths the program
# finds it through LD_LIBRARY_PATH.
export LD_LIBRARY_PATH=$(dirname "$pcdir")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
read -r -a pc_c_flags <<<"$(pkg-config --cflags --libs uvasync-c)"
${CC:-cc} -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -pedantic -Werror \
    "$here/project/main_c.c" -o "$work/consumer_c_installed" "${pc_c_flags[@]}" ||
    fail "pkg-config: the C consumer did not build"
out=$("$work/consumer_c_installed" 2>&1) ||
    { printf '%s\n' "$out"; fail "pkg-config: the C consumer exited non-zero"; }
printf '%s\n' "$out"
[[ $out == *"consumer-c: ok"* ]] || fail "pkg-config: the C consumer did not print 'consumer-c: ok'"

step "all configurations passed"
