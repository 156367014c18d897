// SPDX-License-Identifier: MIT
// Loads only to run the host check. Built with UVASYNC_NODE_EXPECTED_UV_HEX set to a libuv
// major version that no Node has, so require() must fail with ERR_UVASYNC_HOST
// (test/layer.test.js).
#include <uvasync/node.hpp>

namespace {

napi_value init(napi_env env, napi_value exports) {
    return uvasync::node::guard(env, [&] {
        uvasync::node::check_host(env);
        return exports;
    });
}

} // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
