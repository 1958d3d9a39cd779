// A native addon in C through Node-API: fnv1a(string) -> the 32-bit FNV-1a
// hash of its UTF-8 bytes, as 8 hex digits.
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static napi_value fnv1a(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    napi_throw_type_error(env, NULL, "fnv1a(string) needs a string");
    return NULL;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "fnv1a(string) needs a string");
    return NULL;
  }
  char *buf = malloc(len + 1);
  if (buf == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, argv[0], buf, len + 1, &len);
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)buf[i];
    h *= 16777619u;
  }
  free(buf);
  char hex[9];
  snprintf(hex, sizeof hex, "%08x", h);
  napi_value out;
  napi_create_string_utf8(env, hex, 8, &out);
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "fnv1a", NAPI_AUTO_LENGTH, fnv1a, NULL, &fn);
  napi_set_named_property(env, exports, "fnv1a", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
