// SPDX-License-Identifier: MIT
#include "scenarios.hpp"

int main(int argc, char** argv) {
    return seed::main_for(&seed::server_pattern, argc, argv);
}
