// SPDX-License-Identifier: MIT
// The program the schedule fuzzer runs: fuzzer bytes decoded into a tree of operations.
//
// The decoder is total: every byte string is a valid program (missing bytes read as zero), and
// the program is bounded in size and nesting, so every input finishes in bounded virtual time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace uvasync::fuzz {

enum class op_kind : std::uint8_t {
    sleep,      // sleep(ms); 0 ms is a yield
    spawn,      // spawn(sub) detached; its handle joins a global list, joined at the end
    cancel,     // cancel handle #arg of that list (may be the running task itself)
    timeout,    // timeout(ms, scope form: sub)
    reschedule, // reschedule (or cancel()) the innermost timeout scope of this task
    move_on,    // move_on_after(ms, sub)
    shielded,   // shielded(sub)
    shield,     // shield(sub): the asyncio form, over a task or a spawned handle
    task_group, // task_group::run: body runs subs[0], spawns the other subs
    gather,     // gather(sub0, sub1)
    wait_for,   // wait_for(sub, ms)
    event,      // set / clear / wait (bounded by move_on_after)
    semaphore,  // acquire (bounded), hold across a sleep, release
    queue,      // put / get (bounded) on a queue of capacity 2
    future,     // set the promise / await the future (bounded)
    fail,       // throw a test error
    count
};

struct program;

struct op {
    op_kind kind = op_kind::sleep;
    std::uint8_t arg = 0;  // a duration in ticks, a handle index, a variant
    std::uint8_t arg2 = 0; // a second duration or variant
    std::vector<program> subs;
};

struct program {
    std::vector<op> ops;
};

/// Reads bytes; past the end every byte is zero.
class byte_reader {
public:
    byte_reader(const std::uint8_t* data, std::size_t size) noexcept
        : data_(data)
        , size_(size) {}

    std::uint8_t next() noexcept { return pos_ < size_ ? data_[pos_++] : 0; }

    [[nodiscard]] bool exhausted() const noexcept { return pos_ >= size_; }

private:
    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_ = 0;
};

inline constexpr int max_depth = 4;
inline constexpr int max_ops = 64;
inline constexpr int max_ops_per_program = 8;

/// Decodes one program at nesting `depth`; `budget` is the number of operations left for the
/// whole input.
inline program decode(byte_reader& in, int depth, int& budget) {
    program p;
    const int n = in.next() % (max_ops_per_program + 1);
    for (int i = 0; i < n && budget > 0 && !in.exhausted(); ++i) {
        --budget;
        op o;
        o.kind = static_cast<op_kind>(in.next() % static_cast<std::uint8_t>(op_kind::count));
        o.arg = in.next();
        o.arg2 = in.next();
        int subs = 0;
        switch (o.kind) {
        case op_kind::spawn:
        case op_kind::timeout:
        case op_kind::move_on:
        case op_kind::shielded:
        case op_kind::shield:
        case op_kind::wait_for:
            subs = 1;
            break;
        case op_kind::gather:
            subs = 2;
            break;
        case op_kind::task_group:
            subs = 1 + o.arg2 % 3;
            break;
        default:
            break;
        }
        if (subs > 0 && depth >= max_depth) {
            o.kind = op_kind::sleep; // too deep: a leaf instead
            subs = 0;
        }
        for (int s = 0; s < subs; ++s) {
            o.subs.push_back(decode(in, depth + 1, budget));
        }
        p.ops.push_back(std::move(o));
    }
    return p;
}

} // namespace uvasync::fuzz
