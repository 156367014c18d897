// SPDX-License-Identifier: MIT
#include <system_error>

#include <doctest/doctest.h>
#include <uv.h>
#include <uvasync/io/error.hpp>

using uvasync::uv_error_code;

TEST_CASE("error_uv_category_names_and_messages") {
    const std::error_code ec = uv_error_code(UV_ECONNREFUSED);
    CHECK(ec.value() == UV_ECONNREFUSED);
    CHECK(std::string(ec.category().name()) == "uv");
    CHECK(ec.message() == uv_strerror(UV_ECONNREFUSED));
    CHECK(uvasync::uv_error_name(UV_ECANCELED) == "ECANCELED");
}

TEST_CASE("error_errno_codes_compare_with_std_errc") {
    CHECK((uv_error_code(UV_ECONNREFUSED) == std::errc::connection_refused));
    CHECK((uv_error_code(UV_ECANCELED) == std::errc::operation_canceled));
    CHECK((uv_error_code(UV_ETIMEDOUT) != std::errc::connection_refused));
}

TEST_CASE("error_libuv_only_codes_map_to_themselves") {
    const std::error_code eof = uv_error_code(UV_EOF);
    CHECK((eof.default_error_condition().category() == uvasync::uv_category()));
    CHECK(eof.message() == "end of file");
    CHECK(uv_error_code(UV_EAI_NONAME).default_error_condition().value() == UV_EAI_NONAME);
}

TEST_CASE("error_throw_uv_error_carries_code_and_context") {
    try {
        uvasync::throw_uv_error(UV_EADDRINUSE, "tcp_listener::bind 127.0.0.1:80");
        FAIL("not thrown");
    } catch (const std::system_error& e) {
        CHECK((e.code() == uv_error_code(UV_EADDRINUSE)));
        CHECK(std::string(e.what()).find("tcp_listener::bind 127.0.0.1:80") != std::string::npos);
        CHECK(std::string(e.what()).find("address already in use") != std::string::npos);
    }
    CHECK(uvasync::detail::check_uv(3, "ok") == 3);
    CHECK_THROWS_AS(uvasync::detail::check_uv(UV_EINVAL, "bad"), std::system_error);
}
