// SPDX-License-Identifier: MIT
// Counts every call of the global operator new in a bench program (issue 5, W5: "allocations
// per operation counted by an operator new hook"). Link alloc_count.cpp into the program; the
// replacement operators live there, out of sight of the optimiser.
#pragma once

#include <cstdint>

namespace bench {

extern std::uint64_t allocations;

} // namespace bench
