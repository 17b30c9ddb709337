"""Malformed gRPC-web framing answered at the edge, in Envoy, before a service waits on it.

A unary or server-streaming call carries exactly one length-prefixed message: a flag byte,
a 4-byte big-endian length, the message. A gRPC server handed an empty body, a frame whose
length runs past the end of the body, or a frame with the compressed flag and no agreed
encoding either waits for bytes that never come (until the gateway's timeout) or answers
INTERNAL. This Lua filter runs after the buffer filter (so the whole body is there, already
size-checked, and gRPC-web already turned into gRPC by ``grpc_web``) and answers each of
those at once with INVALID_ARGUMENT naming what is wrong. Client-streaming routes skip it
(their bodies are streams of any number of messages), and so do native gRPC calls (see
:func:`frame_check_filter`).

Bodies of the right shape pass untouched; what is inside the message is for the service to
judge (its INVALID_ARGUMENT names the field).
"""

from __future__ import annotations

from typing import Any

LUA_FILTER = "envoy.filters.http.lua"
_LUA_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua"
_LUA_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute"
_WITH_MATCHER_TYPE = "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher"
_HEADER_INPUT_TYPE = "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput"
_SKIP_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.common.matcher.action.v3.SkipFilter"
GRPC_STATUS_INVALID_ARGUMENT = 3

# Messages name the request's framing only: nothing of Envoy or the service behind it.
FRAME_CHECK = f"""
local INVALID_ARGUMENT = "{GRPC_STATUS_INVALID_ARGUMENT}"

local function refuse(handle, message)
  handle:respond({{
    [":status"] = "200",
    ["content-type"] = "application/grpc",
    ["grpc-status"] = INVALID_ARGUMENT,
    ["grpc-message"] = message,
  }}, "")
end

function envoy_on_request(handle)
  local content_type = handle:headers():get("content-type")
  if content_type == nil or string.sub(content_type, 1, 16) ~= "application/grpc" then
    return
  end
  local body = handle:body()
  local size = 0
  if body ~= nil then
    size = body:length()
  end
  if size == 0 then
    return refuse(handle, "request: empty body, expected one message")
  end
  if size < 5 then
    return refuse(handle, "request: truncated message frame")
  end
  local flag, b1, b2, b3, b4 = string.byte(body:getBytes(0, 5), 1, 5)
  if flag ~= 0 then
    if flag == 1 then
      return refuse(handle, "request: compressed messages are not accepted")
    end
    return refuse(handle, "request: invalid message frame flag")
  end
  local length = ((b1 * 256 + b2) * 256 + b3) * 256 + b4
  if 5 + length > size then
    return refuse(handle, "request: truncated message")
  end
  if 5 + length < size then
    return refuse(handle, "request: expected exactly one message")
  end
end
"""


def frame_check_filter() -> dict[str, Any]:
    """The Lua filter that checks the framing of single-message gRPC-web requests.

    It runs only for calls that say they are gRPC-web (``x-grpc-web``, sent by every
    gRPC-web client, Connect's included): a Lua call per request costs Envoy about a third
    more CPU per call, and native gRPC clients frame their messages themselves (their
    services answer undecodable bytes with INVALID_ARGUMENT).
    """
    lua = {"@type": _LUA_TYPE, "default_source_code": {"inline_string": FRAME_CHECK}}
    not_grpc_web = {
        "not_matcher": {
            "single_predicate": {
                "input": {
                    "name": "x-grpc-web",
                    "typed_config": {"@type": _HEADER_INPUT_TYPE, "header_name": "x-grpc-web"},
                },
                "value_match": {"safe_regex": {"google_re2": {}, "regex": ".*"}},
            }
        }
    }
    skip = {"action": {"name": "skip", "typed_config": {"@type": _SKIP_FILTER_TYPE}}}
    return {
        "@type": _WITH_MATCHER_TYPE,
        "extension_config": {"name": LUA_FILTER, "typed_config": lua},
        "xds_matcher": {"matcher_list": {"matchers": [{"predicate": not_grpc_web, "on_match": skip}]}},
    }


def frame_check_disabled() -> dict[str, Any]:
    """Per-route setting that skips the check (client streams, the static site)."""
    return {"@type": _LUA_ROUTE_TYPE, "disabled": True}
