// SPDX-License-Identifier: MIT
// How doctest prints the vectors that tests compare (event traces, result lists).
#pragma once

#include <string>
#include <vector>

#include <doctest/doctest.h>

namespace doctest {

template <>
struct StringMaker<std::vector<std::string>> {
    static String convert(const std::vector<std::string>& v) {
        std::string s = "{";
        for (const auto& e : v) {
            s += "\"" + e + "\", ";
        }
        s += "}";
        return String(s.c_str());
    }
};

template <>
struct StringMaker<std::vector<int>> {
    static String convert(const std::vector<int>& v) {
        std::string s = "{";
        for (int e : v) {
            s += std::to_string(e) + ", ";
        }
        s += "}";
        return String(s.c_str());
    }
};

} // namespace doctest
