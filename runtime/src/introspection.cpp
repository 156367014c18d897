// SPDX-License-Identifier: MIT
// Introspection (docs/introspection.md): task names, the snapshot of live tasks, the task tree
// dump and its signal, and the trace points behind `tracer` (trace.hpp). Nothing here is on a
// hot path: the scheduler reaches it only through one branch on `runtime_state::tracing()`.
#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <uvasync/detail/child_set.hpp>
#include <uvasync/detail/park.hpp>
#include <uvasync/detail/runtime_state.hpp>
#include <uvasync/detail/task_info.hpp>
#include <uvasync/detail/trace_points.hpp>
#include <uvasync/error.hpp>
#include <uvasync/introspection.hpp>
#include <uvasync/runtime.hpp>
#include <uvasync/task.hpp>
#include <uvasync/trace.hpp>

#include "runtime_cold.hpp"

namespace uvasync {

tracer::~tracer() = default;

namespace detail {

/// The one friend of the scheduler's, the cancellation tree's and the waits' private state.
struct introspection_access {
    static intrusive_list<task_core, all_tasks_tag>& tasks(runtime_state& rt) noexcept {
        return rt.tasks_;
    }

    static loop_clock::duration slow_wait_threshold(const runtime_state& rt) noexcept {
        return rt.cold_->slow_wait_threshold;
    }

    /// The parked wait `core` is suspended in, if any: parked waits register on the node of
    /// the innermost scope at the point where they park, which stays the task's current scope
    /// while it is parked.
    static const parked_wait* parked_wait_of(const task_core& core) noexcept {
        const parked_wait* found = nullptr;
        const_cast<cancel_node&>(core.current->node)
            .callbacks_.for_each([&](cancel_registration& r) {
                if (found == nullptr && r.fn == &parked_wait::on_cancel) {
                    const auto& w = static_cast<const parked_wait&>(r);
                    if (w.state_ == parked_wait::state::waiting) {
                        found = &w;
                    }
                }
            });
        return found;
    }

    static const wait_kind& kind(const parked_wait& w) noexcept { return *w.kind_; }

    static bool aborted(const parked_wait& w) noexcept {
        return w.state_ == parked_wait::state::aborted;
    }

    static std::coroutine_handle<> caller(const parked_wait& w) noexcept { return w.caller_; }

    static cancel_node* first_child(cancel_node& n) noexcept { return n.children_.front(); }

    static child_set* set_of(const task_core& core) noexcept {
        return core.parent_set == nullptr ? nullptr : static_cast<child_set*>(core.parent_set);
    }

    static const scope& scope_of(const child_set& s) noexcept { return s.scope_; }

    static std::size_t live_children(const child_set& s) noexcept {
        std::size_t n = 0;
        const_cast<child_set&>(s).children_.for_each([&](task_core&) { ++n; });
        return n;
    }

    static bool waiting_at_exit(const child_set& s) noexcept {
        return static_cast<bool>(s.exit_waiter_);
    }
};

using access = introspection_access;

namespace {

std::uint64_t group_of(const task_core& core) noexcept {
    const child_set* s = access::set_of(core);
    return s == nullptr ? 0 : access::scope_of(*s).id;
}

std::string_view name_of(const task_core& core) noexcept {
    const task_info* r = info_record(core.info);
    return r == nullptr ? std::string_view{} : std::string_view(r->name);
}

/// The task groups (and gathers) that have live children, by owner.
std::multimap<const task_core*, const child_set*> groups_by_owner(runtime_state& rt) {
    std::multimap<const task_core*, const child_set*> out;
    std::vector<const child_set*> seen;
    access::tasks(rt).for_each([&](task_core& t) {
        const child_set* s = access::set_of(t);
        if (t.done() || s == nullptr || std::find(seen.begin(), seen.end(), s) != seen.end()) {
            return;
        }
        seen.push_back(s);
        out.emplace(s->owner(), s);
    });
    return out;
}

bool waits_at_group_exit(const task_core& core,
                         const std::multimap<const task_core*, const child_set*>& groups) {
    auto [b, e] = groups.equal_range(&core);
    return std::any_of(b, e, [](const auto& g) { return access::waiting_at_exit(*g.second); });
}

task_status status_of(const task_core& core, const parked_wait* wait,
                      const std::multimap<const task_core*, const child_set*>& groups) {
    if (current_task() == &core) {
        return task_status::running;
    }
    if (core.task_scope.cancelled()) {
        return task_status::finishing;
    }
    if (wait != nullptr || waits_at_group_exit(core, groups)) {
        return task_status::parked;
    }
    return task_status::ready;
}

long long ms(loop_clock::duration d) {
    return static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

const char* scope_kind_name(scope_kind k) noexcept {
    switch (k) {
    case scope_kind::task:
        return "task";
    case scope_kind::token:
        return "token";
    case scope_kind::timeout:
        return "timeout";
    case scope_kind::shield:
        return "shield";
    case scope_kind::group:
        return "group";
    }
    return "scope";
}

std::string_view base_name(const char* path) noexcept {
    std::string_view p(path);
    const auto slash = p.find_last_of('/');
    return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

/// How many `task<T>` frames the task is awaiting through: from the frame that parked out to
/// the task's body. Every frame of a task is a `task<T>` frame (the library's one coroutine
/// type; its promise starts with `task_promise_base`), linked by `continuation_`.
std::size_t await_depth(const task_core& core, std::coroutine_handle<> innermost) noexcept {
    std::size_t depth = 1;
    std::coroutine_handle<> h = innermost;
    while (h && h.address() != core.frame().address() && depth < 1000) {
        h = std::coroutine_handle<task_promise_base>::from_address(h.address())
                .promise()
                .continuation_;
        ++depth;
    }
    return h.address() == core.frame().address() ? depth : 0;
}

class dumper {
public:
    dumper(runtime_state& rt, std::ostream& out)
        : rt_(rt)
        , out_(out)
        , groups_(groups_by_owner(rt))
        , now_(rt.now()) {}

    void run() {
        std::size_t live = 0;
        access::tasks(rt_).for_each([&](task_core& t) { live += t.done() ? 0 : 1; });
        out_ << "uvasync runtime: " << live << (live == 1 ? " task" : " tasks") << ", "
             << (rt_.is_virtual() ? "virtual clock" : "loop clock") << " at "
             << ms(now_ - rt_.started_at()) << " ms\n";
        access::tasks(rt_).for_each([&](task_core& t) {
            if (!t.done() && access::set_of(t) == nullptr) {
                task(t, 0);
            }
        });
    }

private:
    void indent(int depth) { out_ << std::string(static_cast<std::size_t>(depth) * 2, ' '); }

    void task(const task_core& t, int depth) {
        const parked_wait* wait = access::parked_wait_of(t);
        indent(depth);
        out_ << "task #" << t.task_scope.id;
        if (const std::string_view n = name_of(t); !n.empty()) {
            out_ << " \"" << n << "\"";
        }
        out_ << " " << to_string(status_of(t, wait, groups_));
        if (const std::uint64_t by = spawned_by_of(t.info); by != 0) {
            out_ << ", spawned by #" << by;
        }
        if (const task_info* r = info_record(t.info); r != nullptr && r->has_spawn_site) {
            out_ << ", at " << base_name(r->spawned_at.file) << ":" << r->spawned_at.line;
        }
        out_ << "\n";
        // The scopes it is inside, innermost first, down to its own task scope.
        for (const scope* s = t.current; s != nullptr && s != &t.task_scope; s = s->parent) {
            indent(depth + 1);
            out_ << "scope " << scope_kind_name(s->kind) << " #" << s->id;
            if (s->own_deadline != never) {
                const auto left = std::max(s->own_deadline - now_, loop_clock::duration::zero());
                out_ << ", deadline " << ms(s->own_deadline - rt_.started_at()) << " ms, remaining "
                     << ms(left) << " ms";
            }
            if (s->cancelled()) {
                out_ << ", cancelled";
            }
            out_ << "\n";
        }
        if (t.task_scope.cancelled()) {
            indent(depth + 1);
            out_ << "cancelled";
            if (const message_ptr& m = t.task_scope.node.message(); m != nullptr) {
                out_ << ": " << *m;
            }
            out_ << "\n";
        }
        if (wait != nullptr) {
            const wait_kind& k = access::kind(*wait);
            indent(depth + 1);
            out_ << "parked on " << k.name;
            if (k.describe != nullptr) {
                std::string details;
                k.describe(*wait, rt_.started_at(), details);
                if (!details.empty()) {
                    out_ << " " << details;
                }
            }
            if (const std::size_t d = await_depth(t, access::caller(*wait)); d > 1) {
                out_ << ", " << d << " task frames deep";
            }
            out_ << "\n";
        } else {
            // Waiting at the exit of a task group, gather, wait_any or as_completed it owns.
            auto [b, e] = groups_.equal_range(&t);
            for (auto it = b; it != e; ++it) {
                if (access::waiting_at_exit(*it->second)) {
                    const std::size_t n = access::live_children(*it->second);
                    indent(depth + 1);
                    out_ << "parked on " << it->second->what() << " exit, " << n
                         << (n == 1 ? " task" : " tasks") << " left\n";
                }
            }
        }
        auto [b, e] = groups_.equal_range(&t);
        for (auto it = b; it != e; ++it) {
            group(*it->second, depth + 1);
        }
    }

    void group(const child_set& g, int depth) {
        indent(depth);
        out_ << "group #" << access::scope_of(g).id;
        if (access::waiting_at_exit(g)) {
            out_ << ", owner waiting at its exit";
        }
        if (access::scope_of(g).cancelled()) {
            out_ << ", cancelled";
        }
        out_ << "\n";
        access::tasks(rt_).for_each([&](task_core& c) {
            if (!c.done() && access::set_of(c) == &g) {
                task(c, depth + 1);
            }
        });
    }

    runtime_state& rt_;
    std::ostream& out_;
    std::multimap<const task_core*, const child_set*> groups_;
    deadline now_;
};

// A scope's node is its first member, and every node that is not a cancel source's is a
// scope's (scope.hpp): the propagation observer gets back from the nodes to the scopes, and
// from a task scope to its task.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
#endif
static_assert(offsetof(scope, node) == 0);
constexpr std::size_t task_scope_offset = offsetof(task_core, task_scope);
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

scope& scope_of_node(cancel_node& n) noexcept {
    return *reinterpret_cast<scope*>(&n);
}

/// The task a scope is in: up its chain to the task scope (a group's scope is in its
/// owner). Null for a token scope, which encloses its task's scope.
task_core* task_of(scope& s) noexcept {
    scope* p = &s;
    while (p != nullptr && p->kind != scope_kind::task) {
        p = p->parent;
    }
    if (p == nullptr) {
        return nullptr;
    }
    return reinterpret_cast<task_core*>(reinterpret_cast<char*>(p) - task_scope_offset);
}

scope_type scope_type_of(scope_kind k) noexcept {
    switch (k) {
    case scope_kind::shield:
        return scope_type::shield;
    case scope_kind::group:
        return scope_type::group;
    case scope_kind::token:
        return scope_type::token;
    case scope_kind::task:
    case scope_kind::timeout:
        break;
    }
    return scope_type::timeout;
}

/// The task a token scope encloses (its node's child is the task scope's node).
task_core* token_owner(cancel_node& token_node) noexcept {
    cancel_node* c = access::first_child(token_node);
    return c == nullptr ? nullptr : task_of(scope_of_node(*c));
}

task_event event_of(task_core& core) noexcept {
    return task_event{core.task_scope.id, name_of(core), spawned_by_of(core.info), group_of(core),
                      core.rt->now()};
}

} // namespace

task_info& ensure_info(task_core& core) {
    if (task_info* r = info_record(core.info)) {
        return *r;
    }
    auto* r = new task_info;
    r->spawned_by = spawned_by_of(core.info);
    core.info = record_tag(r);
    return *r;
}

void label_task(task_core& core, const spawn_label& label) {
    task_info& r = ensure_info(core);
    r.name.assign(label.name);
    r.spawned_at = label.where;
    r.has_spawn_site = true;
}

void runtime_state::on_dump_signal() noexcept {
    try {
        std::ostringstream text;
        dumper(*this, text).run();
        std::fputs(text.str().c_str(), stderr);
        std::fflush(stderr);
    } catch (...) { // std::bad_alloc: no dump this time
    }
}

// ---- trace points (trace_points.hpp): each call site checked tracing() != null ----

void trace_spawned(task_core& core) noexcept {
    core.rt->tracing()->task_spawned(event_of(core));
    if (core.token_scope != nullptr) {
        trace_scope(scope_trace::enter, *core.token_scope, core, core.token_scope->cancelled(),
                    false, false);
    }
}

void trace_started(task_core& core) noexcept {
    core.rt->tracing()->task_started(event_of(core));
}

std::uint64_t trace_group(const task_core& core) noexcept {
    return group_of(core);
}

void trace_finished(task_core& core, std::uint64_t group) noexcept {
    task_end how = task_end::value;
    if (core.result == outcome::error) {
        how = task_end::error;
    } else if (core.result == outcome::cancelled) {
        how = task_end::cancelled;
    }
    if (core.token_scope != nullptr) {
        trace_scope(scope_trace::exit, *core.token_scope, core, core.token_scope->cancelled(),
                    false, false);
    }
    task_event e = event_of(core);
    e.group = group;
    core.rt->tracing()->task_finished(e, how);
}

void trace_propagation(cancel_node& origin, intrusive_list<cancel_node, work_tag>& marked,
                       bool posted) noexcept {
    // The origin's scope and task (none for a cancel source's node).
    scope* const from = origin.shared() ? nullptr : &scope_of_node(origin);
    task_core* const from_task = from == nullptr ? nullptr : task_of(*from);
    const std::uint64_t origin_id = from == nullptr ? 0 : from->id;
    // A group's own cancellation (its cancel(), a failing child, wait_any's losers) is its
    // "expire"; a timeout scope reports its own in timeout_scope::expire().
    if (from != nullptr && from->kind == scope_kind::group && from_task != nullptr &&
        from_task->rt != nullptr && from_task->rt->tracing() != nullptr) {
        trace_scope(scope_trace::expire, *from, *from_task, true, false, false);
    }
    marked.for_each([&](cancel_node& n) {
        if (n.shared()) {
            return;
        }
        scope& s = scope_of_node(n);
        if (s.kind == scope_kind::token) {
            // A task's token scope expires when its cancel source is cancelled: its task is
            // the one whose task scope is the token scope's child.
            if (task_core* t = token_owner(n);
                t != nullptr && t->rt != nullptr && t->rt->tracing() != nullptr && !t->done()) {
                trace_scope(scope_trace::expire, s, *t, true, false, false);
            }
            return;
        }
        // One event per task the request reaches: at the origin, and where it enters another
        // task (its task scope); a task's inner scopes are part of the same request.
        if (&n != &origin && s.kind != scope_kind::task) {
            return;
        }
        task_core* t = task_of(s);
        if (t == nullptr || t->rt == nullptr || t->done()) {
            return;
        }
        tracer* tr = t->rt->tracing();
        if (tr == nullptr) {
            return;
        }
        cancel_cause cause = cancel_cause::parent;
        if (from == nullptr) {
            cause = posted ? cancel_cause::cross_thread : cancel_cause::token;
        } else if (from_task == t && from->kind == scope_kind::task) {
            cause = t->rt->accepting() ? cancel_cause::handle : cancel_cause::shutdown;
        } else if (from_task == t) {
            cause = from->kind == scope_kind::timeout && from->own_deadline <= t->rt->now()
                        ? cancel_cause::deadline
                        : cancel_cause::scope;
        }
        const message_ptr& m = n.message();
        tr->task_cancel_requested(
            event_of(*t), cancel_event{cause, origin_id,
                                       m == nullptr ? std::string_view{} : std::string_view(*m)});
    });
}

void trace_scope(scope_trace what, const scope& s, task_core& core, bool expired, bool converted,
                 bool move_on) noexcept {
    const scope_event e{s.id,    core.task_scope.id, s.own_deadline, core.rt->now(),
                        expired, converted,          move_on,        scope_type_of(s.kind)};
    tracer* t = core.rt->tracing();
    switch (what) {
    case scope_trace::enter:
        t->scope_entered(e);
        break;
    case scope_trace::expire:
        t->scope_expired(e);
        break;
    case scope_trace::exit:
        t->scope_exited(e);
        break;
    }
}

void trace_suspended(task_core& core) noexcept {
    if (access::slow_wait_threshold(*core.rt) <= loop_clock::duration::zero()) {
        return;
    }
    const parked_wait* wait = access::parked_wait_of(core);
    if (wait == nullptr && info_record(core.info) == nullptr) {
        return; // not parked in a wait, and nothing to forget
    }
    try {
        task_info& r = ensure_info(core);
        r.parked_in = wait;
        r.parked_since = core.rt->now();
    } catch (...) { // std::bad_alloc: this wait is not checked
    }
}

void trace_resumed(task_core& core) noexcept {
    task_info* r = info_record(core.info);
    if (r == nullptr || r->parked_in == nullptr) {
        return;
    }
    // The wait is still alive: the task is suspended in it until this very resumption.
    const parked_wait& wait = *std::exchange(r->parked_in, nullptr);
    const loop_clock::duration threshold = access::slow_wait_threshold(*core.rt);
    const loop_clock::duration waited = core.rt->now() - r->parked_since;
    if (threshold > loop_clock::duration::zero() && waited >= threshold) {
        core.rt->tracing()->slow_wait(
            event_of(core),
            slow_wait_event{access::kind(wait).name, waited, access::aborted(wait)});
    }
}

} // namespace detail

const char* to_string(task_status s) noexcept {
    switch (s) {
    case task_status::ready:
        return "ready";
    case task_status::running:
        return "running";
    case task_status::parked:
        return "parked";
    case task_status::finishing:
        return "finishing";
    }
    return "unknown";
}

const char* to_string(cancel_cause c) noexcept {
    switch (c) {
    case cancel_cause::handle:
        return "handle";
    case cancel_cause::shutdown:
        return "shutdown";
    case cancel_cause::deadline:
        return "deadline";
    case cancel_cause::scope:
        return "scope";
    case cancel_cause::parent:
        return "parent";
    case cancel_cause::token:
        return "token";
    case cancel_cause::cross_thread:
        return "cross thread";
    }
    return "unknown";
}

void set_current_task_name(std::string_view name) {
    detail::task_core* core = detail::require_task("set_current_task_name()");
    detail::ensure_info(*core).name.assign(name);
}

std::string current_task_name() {
    return std::string(detail::name_of(*detail::require_task("current_task_name()")));
}

std::uint64_t current_task_id() {
    return detail::require_task("current_task_id()")->task_scope.id;
}

std::vector<task_snapshot> runtime::tasks() const {
    state_->check_thread("runtime::tasks()");
    const auto groups = detail::groups_by_owner(*state_);
    std::vector<task_snapshot> out;
    detail::access::tasks(*state_).for_each([&](detail::task_core& t) {
        if (t.done()) {
            return;
        }
        const detail::parked_wait* wait = detail::access::parked_wait_of(t);
        task_snapshot s;
        s.id = t.task_scope.id;
        s.name = std::string(detail::name_of(t));
        s.status = detail::status_of(t, wait, groups);
        s.spawned_by = detail::spawned_by_of(t.info);
        s.group = detail::group_of(t);
        if (wait != nullptr) {
            s.parked_on = detail::access::kind(*wait).name;
        } else if (detail::waits_at_group_exit(t, groups)) {
            s.parked_on = "group exit";
        }
        out.push_back(std::move(s));
    });
    return out;
}

void runtime::dump(std::ostream& out) const {
    state_->check_thread("runtime::dump()");
    detail::dumper(*state_, out).run();
}

std::string runtime::dump() const {
    std::ostringstream out;
    dump(out);
    return out.str();
}

} // namespace uvasync
