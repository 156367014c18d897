// SPDX-License-Identifier: MIT
#include "scenarios.hpp"

int main(int argc, char** argv) {
    return seed::main_for(&seed::deadline_tracking, argc, argv);
}
