#!/bin/sh
# SPDX-License-Identifier: MIT
# How long a user's one-file program takes to compile against the installed headers: a hello
# with one `timeout`, compiled N times (default 5) with `$CXX -std=c++20 -O2 -c`. Prints the
# median wall time and CPU time (user + system, which a busy machine disturbs less) in seconds,
# and the line count after preprocessing. No ccache: the point is
# what every user build pays. Usage: bench/compile_time.sh [N]   (CXX defaults to g++)
set -eu
n=${1:-5}
cxx=${CXX:-g++}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cat >"$tmp/hello.cpp" <<'CPP'
#include <cstdio>

#include <uvasync/uvasync.hpp>

using namespace std::chrono_literals;

uvasync::task<int> slow() {
    co_await uvasync::sleep(1s);
    co_return 1;
}

uvasync::task<> main_task() {
    try {
        co_await uvasync::timeout(50ms, slow());
    } catch (const uvasync::timeout_error&) {
        std::puts("timed out");
    }
}

int main() {
    uvasync::run(main_task());
}
CPP
flags="-std=c++20 -O2 -I$root/runtime/include $(pkg-config --cflags libuv 2>/dev/null || true)"
# shellcheck disable=SC2086
lines=$($cxx $flags -E "$tmp/hello.cpp" | wc -l)
i=0
: >"$tmp/times"
while [ "$i" -lt "$n" ]; do
    # shellcheck disable=SC2086
    /usr/bin/time -f '%e %U %S' -a -o "$tmp/times" $cxx $flags -c "$tmp/hello.cpp" -o "$tmp/hello.o"
    i=$((i + 1))
done
median() {
    sort -n | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.2f", m}'
}
wall=$(awk '{print $1}' "$tmp/times" | median)
cpu=$(awk '{print $2 + $3}' "$tmp/times" | median)
echo "median ${wall} s wall, ${cpu} s CPU over ${n} compiles; ${lines} preprocessed lines ($cxx)"
