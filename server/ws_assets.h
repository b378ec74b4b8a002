// The static files the WebSocket listener serves, embedded at build time from
// client-sdk/js/ (cmake/embed_assets.cmake), so heraldd needs no files at run time.
#pragma once

#include <string_view>

namespace herald::server {

std::string_view ws_demo_page() noexcept;      // client-sdk/js/demo.html, served at /
std::string_view ws_client_script() noexcept;  // client-sdk/js/herald.js, served at /herald.js

}  // namespace herald::server
