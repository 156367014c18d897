// SPDX-License-Identifier: MIT
#include "scenarios.hpp"

int main(int argc, char** argv) {
    return seed::main_for(&seed::gather_timeout, argc, argv);
}
