/*
 * moonsocket's optional native Lua engine: Debian's Lua 5.4 (liblua5.4) behind Node-API.
 *
 * The TypeScript adapter (src/lua/native-engine.ts) implements the LuaEngine interface on top of
 * the functions exported here. This file mirrors src/lua/wasmoon-engine.ts call for call, so the
 * two engines behave the same: same sandbox, same value conversions, same limits (a counting
 * allocator with a cap, a CPU budget enforced by a count hook, raised again on every instruction
 * once spent so pcall cannot swallow it, big allocations refused once spent, the budget epoch).
 *
 * The one rule that shapes this file: Lua raises errors with longjmp, and a longjmp must never
 * cross a JavaScript frame (or skip closing a Node-API handle scope). So every Lua operation that
 * may allocate (and so fail) runs inside a protected job (run_job: lua_pcall of a C function),
 * JavaScript is only called from C frames that no longjmp will skip, and the host function
 * trampoline (host_call) raises its Lua error only after the JavaScript call has returned.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* VM instructions between two CPU budget checks (as in the WebAssembly engine). */
#define HOOK_INTERVAL 1000
/* Allocations from this size up are refused once the CPU budget is spent. */
#define BIG_ALLOCATION (1 << 20)
/* Host -> Lua -> host nesting allowed (matches the WebAssembly engine's MAX_NESTING). */
#define MAX_NESTING 150
#define MAX_HOST_DEPTH 256
#define MAX_TABLE_DEPTH 100
#define MAX_TABLE_ENTRIES 1000000
#define MAX_SAFE_INTEGER 9007199254740991LL
/*
 * Offsets into Lua 5.4's private structs on 64-bit targets, checked against a live state before
 * use (see engine_create and js_budget_epoch): `struct lua_State` starts with CommonHeader (next
 * pointer, tt, marked), then status and allowhook; `struct Table` has its array pointer at 16.
 */
#define THREAD_TYPE_TAG_OFFSET (sizeof(void *))
#define ALLOWHOOK_OFFSET (sizeof(void *) + 3)
#define LUA_VTHREAD_TAG 8
#define TABLE_ARRAY_OFFSET 16

/* Modes a host function's result comes back in (written by the JS dispatcher to shared[0]). */
enum { RESULT_ONE = 0, RESULT_MULTI = 1, RESULT_YIELD = 2, RESULT_ERROR = 3, RESULT_LUA_ERROR = 4,
       RESULT_NONE = 5, RESULT_MEMORY_ERROR = 6 };

/* Kinds of conversion failure reported to JS instead of a Lua error. */
enum { CONV_NONE = 0, CONV_TYPE_ERROR, CONV_ENGINE_ERROR, CONV_JS_EXCEPTION };

typedef struct engine engine;
typedef void (*job_fn)(engine *e, lua_State *L, void *ctx);

typedef struct job {
  job_fn fn;
  void *ctx;
  struct job *prev;
} job;

typedef struct {
  char *data;
  size_t len, cap;
} strbuf;

struct engine {
  lua_State *L;
  napi_env env;
  size_t used, max;
  int force_oom;
  /* CPU budget of the running entry (see src/lua/cpu-budget.ts for the design). */
  double budget_ms, cpu_start, wall_check_at;
  int budget_started, budget_spent, allocation_refused;
  /* Budget epoch: registry ref of the table, address of its t[1] (or NULL), last epoch seen. */
  int epoch_ref;
  lua_Integer *epoch_slot;
  lua_Integer last_epoch;
  int depth, closed, close_requested, no_js, can_reenable_hooks;
  int host_mt_ref;
  lua_State *host_L[MAX_HOST_DEPTH];
  int host_depth;
  int next_host_id;
  int *free_ids;
  size_t nfree, capfree;
  job *job_top;
  int has_pending;
  strbuf pending_msg, pending_tb, scratch, warning, host_error;
  int conv_kind;
  char conv_message[256];
  napi_ref adapter, dispatch, make_ref, make_error, ref_class, host_fns, host_names, shared, log;
  napi_ref object_proto, arg_scratch_ref;
  int32_t *shared_data;
  /* JS-visible scratch for argument bytes (see js_arg_bytes), bump-allocated per host call. */
  unsigned char *arg_scratch;
  size_t arg_scratch_size, arg_scratch_top;
};

/* ------------------------------------------------------------------------------------------- */
/* Small helpers */

static double now_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void strbuf_set(strbuf *b, const char *s, size_t len) {
  if (len + 1 > b->cap) {
    size_t cap = len + 1 < 256 ? 256 : len + 1;
    char *data = realloc(b->data, cap);
    if (data == NULL) { b->len = 0; return; }
    b->data = data;
    b->cap = cap;
  }
  if (len > 0) memcpy(b->data, s, len);
  b->data[len] = 0;
  b->len = len;
}

static void strbuf_append(strbuf *b, const char *s, size_t len) {
  if (b->len + len + 1 > b->cap) {
    size_t cap = (b->len + len + 1) * 2;
    char *data = realloc(b->data, cap);
    if (data == NULL) return;
    b->data = data;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, len);
  b->len += len;
  b->data[b->len] = 0;
}

static engine *engine_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return (engine *)ud;
}

/*
 * Lua's own number-to-string conversion (luaO_tostring), without touching the Lua stack:
 * lua_tolstring converts in place and allocates, which may raise.
 */
static size_t format_number(lua_State *L, int idx, char *buf, size_t size) {
  int len;
  if (lua_isinteger(L, idx)) {
    len = snprintf(buf, size, LUA_INTEGER_FMT, (LUAI_UACINT)lua_tointeger(L, idx));
  } else {
    len = snprintf(buf, size, LUA_NUMBER_FMT, (LUAI_UACNUMBER)lua_tonumber(L, idx));
    if (buf[strspn(buf, "-0123456789")] == '\0') {
      buf[len++] = '.';
      buf[len++] = '0';
      buf[len] = 0;
    }
  }
  return (size_t)len;
}

/* ------------------------------------------------------------------------------------------- */
/* CPU budget: starts at its first check; the CPU clock is read only when the wall clock says the
 * budget may be spent (a thread cannot use more CPU time than the time that passed). */

static void budget_reset(engine *e) { e->budget_started = 0; }

static void budget_start(engine *e) {
  e->cpu_start = now_ms(CLOCK_THREAD_CPUTIME_ID);
  e->wall_check_at = now_ms(CLOCK_MONOTONIC) + e->budget_ms;
  e->budget_started = 1;
}

static int budget_is_spent(engine *e) {
  if (!e->budget_started) {
    budget_start(e);
    return 0;
  }
  double now = now_ms(CLOCK_MONOTONIC);
  if (now < e->wall_check_at) return 0;
  double used = now_ms(CLOCK_THREAD_CPUTIME_ID) - e->cpu_start;
  if (used >= e->budget_ms) return 1;
  e->wall_check_at = now + (e->budget_ms - used);
  return 0;
}

static double budget_left(engine *e) {
  if (!e->budget_started) budget_start(e);
  double left = e->budget_ms - (now_ms(CLOCK_THREAD_CPUTIME_ID) - e->cpu_start);
  return left > 0 ? left : 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Allocator: counts bytes, enforces the cap, refuses big growths once the budget is spent. It
 * must not touch the Lua state: Lua is mid-instruction. */

static int big_allocation_allowed(engine *e) {
  if (e->depth == 0 || !e->budget_started) return 1;
  if (e->epoch_ref != 0) {
    /* A dispatcher moved to its next handler, whose budget starts at the next check. */
    if (e->epoch_slot == NULL) return 1;
    if (*e->epoch_slot != e->last_epoch) return 1;
  }
  if (!budget_is_spent(e)) return 1;
  e->allocation_refused = 1;
  return 0;
}

static void *engine_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  engine *e = (engine *)ud;
  size_t old = ptr ? osize : 0; /* with ptr == NULL, osize is a type tag */
  if (nsize == 0) {
    if (ptr) {
      e->used -= old;
      free(ptr);
    }
    return NULL;
  }
  if (nsize > old) {
    if (e->force_oom > 0) {
      e->force_oom--;
      return NULL;
    }
    if (e->used + (nsize - old) > e->max) return NULL;
    if (nsize >= BIG_ALLOCATION && !big_allocation_allowed(e)) return NULL;
  }
  void *r = realloc(ptr, nsize);
  if (r) e->used = e->used - old + nsize;
  return r;
}

/* Raises Lua's own memory error (status LUA_ERRMEM) from a C function. */
static int raise_memory_error(engine *e, lua_State *L) {
  /* Refuses this allocation and Lua's retry after its emergency collection. */
  e->force_oom = 2;
  lua_newuserdatauv(L, 1, 0);
  return 0; /* not reached */
}

/* ------------------------------------------------------------------------------------------- */
/* Hook, message handler, warnings, panic */

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  engine *e = engine_of(L);
  if (e->epoch_ref != 0 && !e->budget_spent) {
    /* A dispatcher moved on to its next handler: that one gets a fresh budget. */
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->epoch_ref);
    lua_rawgeti(L, -1, 1);
    lua_Integer epoch = lua_tointegerx(L, -1, NULL);
    lua_pop(L, 2);
    if (epoch != e->last_epoch) {
      e->last_epoch = epoch;
      budget_reset(e);
    }
  }
  if (!budget_is_spent(e)) {
    /* A thread left in "raise on every instruction" mode by an earlier entry. */
    if (lua_gethookcount(L) == 1) lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_INTERVAL);
    return;
  }
  e->budget_spent = 1;
  /* From now on fire on every instruction, so a pcall that catches the error gets it again at
   * its next instruction, and so on up to the host. */
  if (lua_gethookcount(L) != 1) lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  /* Lua clears allowhook while a hook runs and sets it again when the hook returns, which an
   * error raised here skips: an xpcall message handler would then run with hooks off. */
  if (e->can_reenable_hooks) ((unsigned char *)L)[ALLOWHOOK_OFFSET] = 1;
  luaL_where(L, 0);
  lua_pushliteral(L, "cpu budget exceeded");
  lua_concat(L, 2);
  lua_error(L);
}

/* Text of an error value, as the WebAssembly engine's describeError. */
static void describe_error(engine *e, lua_State *L, int idx, int call_metamethod, strbuf *out) {
  int index = lua_absindex(L, idx);
  int t = lua_type(L, index);
  if (t == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, index, &len);
    strbuf_set(out, s, len);
    return;
  }
  if (t == LUA_TNUMBER) {
    char buf[64];
    size_t len = format_number(L, index, buf, sizeof buf);
    strbuf_set(out, buf, len);
    return;
  }
  if (call_metamethod && !e->budget_spent && lua_checkstack(L, 3) &&
      luaL_getmetafield(L, index, "__tostring") != LUA_TNIL) {
    lua_pushvalue(L, index);
    int ok = lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING;
    if (ok) {
      size_t len;
      const char *s = lua_tolstring(L, -1, &len);
      strbuf_set(out, s, len);
    }
    lua_pop(L, 1);
    if (ok) return;
  }
  char buf[64];
  int len = snprintf(buf, sizeof buf, "(error object is a %s value)", lua_typename(L, t));
  strbuf_set(out, buf, (size_t)len);
}

/* Message handler of every host-level pcall: records message and traceback while the stack of
 * the failing code is still there, and returns the error value unchanged. */
static int message_handler(lua_State *L) {
  engine *e = engine_of(L);
  e->has_pending = 0;
  describe_error(e, L, 1, 1, &e->pending_msg);
  luaL_traceback(L, L, NULL, 1);
  size_t len;
  const char *tb = lua_tolstring(L, -1, &len);
  strbuf_set(&e->pending_tb, tb, len);
  e->has_pending = 1;
  lua_settop(L, 1);
  return 1;
}

static void call_log(engine *e, const char *level, const char *text, size_t len) {
  if (e->no_js || e->log == NULL) return;
  napi_env env = e->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, argv[2], undefined, result;
  napi_get_reference_value(env, e->log, &fn);
  napi_get_undefined(env, &undefined);
  napi_create_string_utf8(env, level, NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(env, text, len, &argv[1]);
  if (napi_call_function(env, undefined, fn, 2, argv, &result) != napi_ok) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
  }
  napi_close_handle_scope(env, scope);
}

static void on_warning(void *ud, const char *msg, int tocont) {
  engine *e = (engine *)ud;
  if (tocont) {
    strbuf_append(&e->warning, msg, strlen(msg));
    return;
  }
  if (e->warning.len == 0 && msg[0] == '@') return; /* control message */
  strbuf_append(&e->warning, msg, strlen(msg));
  strbuf line = {0};
  strbuf_set(&line, "Lua warning: ", 13);
  strbuf_append(&line, e->warning.data, e->warning.len);
  e->warning.len = 0;
  if (line.data) call_log(e, "warn", line.data, line.len);
  free(line.data);
}

static int on_panic(lua_State *L) {
  /* Every operation that may raise runs protected, so this is a bug: say so and stop. */
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
  fprintf(stderr, "moonsocket: Lua panic (unprotected error in the native engine): %s\n", msg);
  return 0; /* Lua aborts */
}

/* ------------------------------------------------------------------------------------------- */
/* Errors reported to JS */

static napi_value make_lua_error(engine *e, const char *code, const char *message, size_t mlen,
                                 const char *traceback, size_t tlen) {
  napi_env env = e->env;
  napi_value fn, argv[3], undefined, result;
  napi_get_reference_value(env, e->make_error, &fn);
  napi_get_undefined(env, &undefined);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(env, message, mlen, &argv[1]);
  napi_create_string_utf8(env, traceback ? traceback : "", traceback ? tlen : 0, &argv[2]);
  if (napi_call_function(env, undefined, fn, 3, argv, &result) != napi_ok) return NULL;
  return result;
}

static void throw_lua_error(engine *e, const char *code, const char *message) {
  napi_value err = make_lua_error(e, code, message, strlen(message), NULL, 0);
  if (err) napi_throw(e->env, err);
}

/* Builds the LuaError of a failed pcall (error value at the top) and pops the error value. */
static napi_value take_error(engine *e, lua_State *L, int status) {
  const char *code = "ERR_LUA_RUNTIME";
  strbuf message = {0};
  const char *tb = NULL;
  size_t tb_len = 0;
  int pending = e->has_pending;
  e->has_pending = 0;
  if (status == LUA_ERRMEM) {
    code = "ERR_LUA_MEMORY";
    strbuf_set(&message, "not enough memory", 17);
  } else if (pending) {
    strbuf_set(&message, e->pending_msg.data, e->pending_msg.len);
    tb = e->pending_tb.data;
    tb_len = e->pending_tb.len;
  } else {
    describe_error(e, L, -1, 0, &message);
  }
  if (status == LUA_ERRSYNTAX) code = "ERR_LUA_SYNTAX";
  else if (status == LUA_ERRERR && !pending) {
    strbuf wrapped = {0};
    strbuf_set(&wrapped, "error in error handling (", 25);
    strbuf_append(&wrapped, message.data, message.len);
    strbuf_append(&wrapped, ")", 1);
    free(message.data);
    message = wrapped;
  }
  if (e->budget_spent && strcmp(code, "ERR_LUA_MEMORY") != 0) code = "ERR_LUA_CPU_BUDGET";
  if (strcmp(code, "ERR_LUA_MEMORY") == 0 && e->allocation_refused) {
    code = "ERR_LUA_CPU_BUDGET";
    strbuf_set(&message, "cpu budget exceeded (an allocation was refused)", 47);
  }
  lua_pop(L, 1);
  napi_value err = make_lua_error(e, code, message.data ? message.data : "", message.len, tb, tb_len);
  free(message.data);
  return err;
}

/* ------------------------------------------------------------------------------------------- */
/* Protected jobs: C code that may raise, run inside lua_pcall on thread L. */

static int job_trampoline(lua_State *L) {
  engine *e = engine_of(L);
  job *j = e->job_top;
  j->fn(e, L, j->ctx);
  return lua_gettop(L);
}

/* Signals a conversion failure from inside a job: recorded for JS, then unwinds the job. */
static int conv_fail(engine *e, lua_State *L, int kind, const char *message) {
  e->conv_kind = kind;
  snprintf(e->conv_message, sizeof e->conv_message, "%s", message);
  lua_pushlightuserdata(L, NULL); /* an error value that needs no allocation */
  return lua_error(L);
}

/*
 * Runs `fn(e, L, ctx)` protected, with `nargs` values from the top of L's stack as its stack.
 * Returns the Lua status; on success the job's stack is left on L where the arguments were
 * (when keep_results) or dropped; on failure the error value is at the top.
 */
static int job_pcall(engine *e, lua_State *L, job_fn fn, void *ctx, int nargs, int keep_results) {
  int base = lua_gettop(L) - nargs;
  e->conv_kind = CONV_NONE;
  if (!lua_checkstack(L, 3)) {
    e->conv_kind = CONV_ENGINE_ERROR;
    snprintf(e->conv_message, sizeof e->conv_message, "Lua stack overflow");
    return LUA_ERRRUN;
  }
  lua_pushcfunction(L, message_handler);
  lua_pushcfunction(L, job_trampoline);
  if (nargs > 0) lua_rotate(L, base + 1, 2);
  job j = {fn, ctx, e->job_top};
  e->job_top = &j;
  e->has_pending = 0;
  int status = lua_pcall(L, nargs, keep_results ? LUA_MULTRET : 0, base + 1);
  e->job_top = j.prev;
  lua_remove(L, base + 1); /* the message handler */
  return status;
}

/* Turns a failed job into a pending JS exception; restores L's stack to `base`. */
static void throw_job_failure(engine *e, lua_State *L, int status, int base) {
  napi_env env = e->env;
  int kind = e->conv_kind;
  e->conv_kind = CONV_NONE;
  if (kind == CONV_JS_EXCEPTION) {
    e->has_pending = 0;
    lua_settop(L, base);
    return; /* the JS exception is pending already */
  }
  if (kind == CONV_TYPE_ERROR) {
    e->has_pending = 0;
    lua_settop(L, base);
    napi_throw_type_error(env, NULL, e->conv_message);
    return;
  }
  if (kind == CONV_ENGINE_ERROR) {
    e->has_pending = 0;
    lua_settop(L, base);
    throw_lua_error(e, "ERR_LUA_ENGINE", e->conv_message);
    return;
  }
  napi_value err = take_error(e, L, status);
  lua_settop(L, base);
  if (err) napi_throw(env, err);
}

/* job_pcall that throws to JS on failure; returns 0 on success, -1 with an exception pending. */
static int run_job(engine *e, lua_State *L, job_fn fn, void *ctx, int nargs) {
  int base = lua_gettop(L) - nargs;
  int status = job_pcall(e, L, fn, ctx, nargs, 0);
  if (status != LUA_OK) {
    throw_job_failure(e, L, status, base);
    return -1;
  }
  lua_settop(L, base);
  return 0;
}

/* ------------------------------------------------------------------------------------------- */
/* Lua -> JS */

typedef struct {
  const void *ancestors[MAX_TABLE_DEPTH + 1];
  int n;
  size_t entries;
} walk_state;

static int is_simple_type(int t) {
  return t == LUA_TNIL || t == LUA_TBOOLEAN || t == LUA_TNUMBER || t == LUA_TSTRING || t == LUA_TNONE;
}

/* A JS conversion failure inside a job: the JS exception stays pending. */
#define NAPI_OK_OR_FAIL(e, L, call)                                                               \
  do {                                                                                            \
    if ((call) != napi_ok) conv_fail((e), (L), CONV_JS_EXCEPTION, "");                            \
  } while (0)

static napi_value number_to_js(engine *e, lua_State *L, int idx) {
  napi_value v;
  if (lua_isinteger(L, idx)) {
    lua_Integer n = lua_tointeger(L, idx);
    if (n >= -MAX_SAFE_INTEGER && n <= MAX_SAFE_INTEGER) napi_create_int64(e->env, n, &v);
    else napi_create_bigint_int64(e->env, n, &v);
  } else {
    napi_create_double(e->env, lua_tonumber(L, idx), &v);
  }
  return v;
}

static napi_value string_to_buffer(engine *e, lua_State *L, int idx) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  napi_value v;
  void *data;
  napi_create_buffer_copy(e->env, len, len ? s : "", &data, &v);
  return v;
}

/* Converts a nil/boolean/number/string: never allocates in Lua, safe outside a job. */
static napi_value simple_to_js(engine *e, lua_State *L, int idx) {
  napi_value v;
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
      napi_get_boolean(e->env, lua_toboolean(L, idx), &v);
      return v;
    case LUA_TNUMBER:
      return number_to_js(e, L, idx);
    case LUA_TSTRING:
      return string_to_buffer(e, L, idx);
    default:
      napi_get_null(e->env, &v);
      return v;
  }
}

/* A LuaRef (through the adapter's factory) to the value at idx. Allocates: inside a job only. */
static napi_value make_ref_js(engine *e, lua_State *L, int idx) {
  int t = lua_type(L, idx);
  lua_pushvalue(L, idx);
  int id = luaL_ref(L, LUA_REGISTRYINDEX);
  napi_env env = e->env;
  napi_value fn, argv[2], undefined, result;
  napi_get_reference_value(env, e->make_ref, &fn);
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, id, &argv[0]);
  napi_create_int32(env, t, &argv[1]);
  NAPI_OK_OR_FAIL(e, L, napi_call_function(env, undefined, fn, 2, argv, &result));
  return result;
}

static napi_value value_to_js(engine *e, lua_State *L, int idx, int depth, walk_state *w);

/* Copies a table into JS: keys exactly 1..n give an array, others an object. */
static napi_value table_to_js(engine *e, lua_State *L, int idx, int depth, walk_state *w) {
  napi_env env = e->env;
  int index = lua_absindex(L, idx);
  const void *identity = lua_topointer(L, index);
  for (int i = 0; i < w->n; i++) {
    if (w->ancestors[i] == identity) conv_fail(e, L, CONV_TYPE_ERROR, "cannot convert a cyclic table");
  }
  if (depth >= MAX_TABLE_DEPTH) conv_fail(e, L, CONV_TYPE_ERROR, "table nested too deeply");
  if (!lua_checkstack(L, 4)) conv_fail(e, L, CONV_TYPE_ERROR, "table nested too deeply");
  w->ancestors[w->n++] = identity;
  napi_value keys, values;
  napi_create_array(env, &keys);
  napi_create_array(env, &values);
  uint32_t count = 0;
  int sequence = 1;
  double max_index = 0;
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    if (++w->entries > MAX_TABLE_ENTRIES) conv_fail(e, L, CONV_TYPE_ERROR, "table too large to convert");
    int key_type = lua_type(L, -2);
    napi_value key = NULL;
    if (key_type == LUA_TSTRING) {
      size_t len;
      const char *s = lua_tolstring(L, -2, &len);
      napi_create_string_utf8(env, s, len, &key);
      sequence = 0;
    } else if (key_type == LUA_TNUMBER) {
      napi_value n;
      if (lua_isinteger(L, -2)) {
        double d = (double)lua_tointeger(L, -2);
        if (d >= 1) { if (d > max_index) max_index = d; }
        else sequence = 0;
        napi_create_double(env, d, &n);
      } else {
        napi_create_double(env, lua_tonumber(L, -2), &n);
        sequence = 0;
      }
      NAPI_OK_OR_FAIL(e, L, napi_coerce_to_string(env, n, &key));
    } else if (key_type == LUA_TBOOLEAN) {
      napi_create_string_utf8(env, lua_toboolean(L, -2) ? "true" : "false", NAPI_AUTO_LENGTH, &key);
      sequence = 0;
    }
    if (key != NULL) {
      napi_value value = value_to_js(e, L, lua_gettop(L), depth + 1, w);
      napi_set_element(env, keys, count, key);
      napi_set_element(env, values, count, value);
      count++;
    }
    lua_pop(L, 1);
  }
  w->n--;
  napi_value result;
  if (sequence && count > 0 && max_index == (double)count) {
    napi_create_array_with_length(env, count, &result);
    for (uint32_t i = 0; i < count; i++) {
      napi_value key, value;
      double position;
      napi_get_element(env, keys, i, &key);
      napi_get_element(env, values, i, &value);
      napi_value number;
      napi_coerce_to_number(env, key, &number);
      napi_get_value_double(env, number, &position);
      napi_set_element(env, result, (uint32_t)position - 1, value);
    }
    return result;
  }
  napi_create_object(env, &result);
  for (uint32_t i = 0; i < count; i++) {
    napi_value key, value;
    napi_get_element(env, keys, i, &key);
    napi_get_element(env, values, i, &value);
    char name[10] = "";
    size_t len = 0;
    napi_get_value_string_utf8(env, key, NULL, 0, &len);
    if (len == 9) napi_get_value_string_utf8(env, key, name, sizeof name, &len);
    if (len == 9 && strcmp(name, "__proto__") == 0) {
      /* Assigning "__proto__" would set the prototype instead of adding a key. */
      napi_property_descriptor d = {NULL, key, NULL, NULL, NULL, value, napi_default_jsproperty, NULL};
      napi_define_properties(env, result, 1, &d);
    } else {
      napi_set_property(env, result, key, value);
    }
  }
  return result;
}

static napi_value value_to_js(engine *e, lua_State *L, int idx, int depth, walk_state *w) {
  int t = lua_type(L, idx);
  if (is_simple_type(t)) return simple_to_js(e, L, idx);
  if (t == LUA_TTABLE) return table_to_js(e, L, idx, depth, w);
  return make_ref_js(e, L, idx);
}

typedef struct {
  int from; /* first stack index to convert */
  napi_value result;
} values_ctx;

/* Job: converts the values from ctx->from to the top into a JS array. */
static void values_job(engine *e, lua_State *L, void *p) {
  values_ctx *c = p;
  int top = lua_gettop(L);
  napi_create_array_with_length(e->env, (size_t)(top - c->from + 1), &c->result);
  for (int i = c->from; i <= top; i++) {
    walk_state w = {.n = 0, .entries = 0};
    napi_value v = value_to_js(e, L, i, 0, &w);
    napi_set_element(e->env, c->result, (uint32_t)(i - c->from), v);
  }
}

/*
 * Converts the values above `below` on L into a JS array and pops them. Values needing refs or
 * table walks are converted inside a job. Returns NULL with an exception pending on failure.
 */
static napi_value take_results(engine *e, lua_State *L, int below) {
  int top = lua_gettop(L);
  int simple = 1;
  for (int i = below + 1; i <= top && simple; i++) simple = is_simple_type(lua_type(L, i));
  if (simple) {
    napi_value array;
    napi_create_array_with_length(e->env, (size_t)(top - below), &array);
    for (int i = below + 1; i <= top; i++) {
      napi_set_element(e->env, array, (uint32_t)(i - below - 1), simple_to_js(e, L, i));
    }
    lua_settop(L, below);
    return array;
  }
  values_ctx c = {.from = 1, .result = NULL};
  if (run_job(e, L, values_job, &c, top - below) != 0) {
    lua_settop(L, below);
    return NULL;
  }
  return c.result;
}

/* ------------------------------------------------------------------------------------------- */
/* JS -> Lua (inside jobs: every push may allocate) */

static int host_call(lua_State *L);

static char *scratch(engine *e, size_t size) {
  if (size + 1 > e->scratch.cap) {
    char *data = realloc(e->scratch.data, size + 1);
    if (data == NULL) return NULL;
    e->scratch.data = data;
    e->scratch.cap = size + 1;
  }
  return e->scratch.data;
}

static void push_string(engine *e, lua_State *L, napi_value v) {
  size_t len;
  NAPI_OK_OR_FAIL(e, L, napi_get_value_string_utf8(e->env, v, NULL, 0, &len));
  char *buf = scratch(e, len);
  if (buf == NULL) raise_memory_error(e, L);
  NAPI_OK_OR_FAIL(e, L, napi_get_value_string_utf8(e->env, v, buf, len + 1, &len));
  lua_pushlstring(L, buf, len);
}

static void push_host_function(engine *e, lua_State *L, napi_value fn, napi_value name) {
  napi_env env = e->env;
  int *ud = lua_newuserdatauv(L, sizeof(int), 0);
  int id = e->nfree > 0 ? e->free_ids[--e->nfree] : e->next_host_id++;
  *ud = id;
  napi_value fns, names;
  napi_get_reference_value(env, e->host_fns, &fns);
  napi_get_reference_value(env, e->host_names, &names);
  napi_set_element(env, fns, (uint32_t)id, fn);
  napi_set_element(env, names, (uint32_t)id, name);
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->host_mt_ref);
  lua_setmetatable(L, -2);
  lua_pushcclosure(L, host_call, 1);
}

/* The registry id of a LuaRef of this engine, or a conversion failure. */
static int ref_id_of(engine *e, lua_State *L, napi_value v) {
  napi_env env = e->env;
  napi_value owner, adapter, released, id;
  bool same, is_released;
  int32_t n;
  napi_get_reference_value(env, e->adapter, &adapter);
  NAPI_OK_OR_FAIL(e, L, napi_get_named_property(env, v, "engine", &owner));
  napi_strict_equals(env, owner, adapter, &same);
  if (!same) conv_fail(e, L, CONV_TYPE_ERROR, "not a LuaRef of this engine");
  NAPI_OK_OR_FAIL(e, L, napi_get_named_property(env, v, "isReleased", &released));
  napi_get_value_bool(env, released, &is_released);
  if (is_released) conv_fail(e, L, CONV_ENGINE_ERROR, "the LuaRef was released");
  NAPI_OK_OR_FAIL(e, L, napi_get_named_property(env, v, "id", &id));
  napi_get_value_int32(env, id, &n);
  return n;
}

static int is_lua_ref(engine *e, napi_value v) {
  napi_value cls;
  bool result = false;
  napi_get_reference_value(e->env, e->ref_class, &cls);
  napi_instanceof(e->env, v, cls, &result);
  return result;
}

static void push_js(engine *e, lua_State *L, napi_value v, int depth);

static void push_table(engine *e, lua_State *L, napi_value v, int depth) {
  napi_env env = e->env;
  if (depth >= MAX_TABLE_DEPTH) conv_fail(e, L, CONV_TYPE_ERROR, "value nested too deeply (or cyclic)");
  if (!lua_checkstack(L, 3)) conv_fail(e, L, CONV_TYPE_ERROR, "value nested too deeply");
  bool is_array;
  napi_is_array(env, v, &is_array);
  if (is_array) {
    uint32_t length;
    napi_get_array_length(env, v, &length);
    lua_createtable(L, (int)length, 0);
    for (uint32_t i = 0; i < length; i++) {
      napi_value item;
      NAPI_OK_OR_FAIL(e, L, napi_get_element(env, v, i, &item));
      push_js(e, L, item, depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return;
  }
  napi_value proto, object_proto, null_value;
  bool plain = false, is_null = false;
  napi_get_prototype(env, v, &proto);
  napi_get_reference_value(env, e->object_proto, &object_proto);
  napi_get_null(env, &null_value);
  napi_strict_equals(env, proto, object_proto, &plain);
  napi_strict_equals(env, proto, null_value, &is_null);
  if (!plain && !is_null) {
    char message[200], name[100] = "object";
    napi_value ctor, ctor_name;
    napi_valuetype t;
    size_t len;
    if (napi_get_named_property(env, v, "constructor", &ctor) == napi_ok &&
        napi_typeof(env, ctor, &t) == napi_ok && t == napi_function &&
        napi_get_named_property(env, ctor, "name", &ctor_name) == napi_ok &&
        napi_typeof(env, ctor_name, &t) == napi_ok && t == napi_string) {
      napi_get_value_string_utf8(env, ctor_name, name, sizeof name, &len);
    } else {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    snprintf(message, sizeof message, "cannot pass a %s to Lua", name);
    conv_fail(e, L, CONV_TYPE_ERROR, message);
  }
  napi_value keys;
  NAPI_OK_OR_FAIL(e, L, napi_get_all_property_names(env, v, napi_key_own_only,
      napi_key_enumerable | napi_key_skip_symbols, napi_key_numbers_to_strings, &keys));
  uint32_t count;
  napi_get_array_length(env, keys, &count);
  lua_createtable(L, 0, (int)count);
  for (uint32_t i = 0; i < count; i++) {
    napi_value key, item;
    napi_valuetype t;
    napi_get_element(env, keys, i, &key);
    NAPI_OK_OR_FAIL(e, L, napi_get_property(env, v, key, &item));
    napi_typeof(env, item, &t);
    if (t == napi_undefined) continue;
    push_string(e, L, key);
    push_js(e, L, item, depth + 1);
    lua_rawset(L, -3);
  }
}

static void push_js(engine *e, lua_State *L, napi_value v, int depth) {
  napi_env env = e->env;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  switch (t) {
    case napi_undefined:
    case napi_null:
      lua_pushnil(L);
      return;
    case napi_boolean: {
      bool b;
      napi_get_value_bool(env, v, &b);
      lua_pushboolean(L, b);
      return;
    }
    case napi_number: {
      double d;
      napi_get_value_double(env, v, &d);
      /* Integral numbers become Lua integers, so that `"id " .. 3` reads "id 3". */
      if (isfinite(d) && floor(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0) {
        lua_pushinteger(L, (lua_Integer)d);
      } else {
        lua_pushnumber(L, d);
      }
      return;
    }
    case napi_bigint: {
      int64_t n;
      bool lossless;
      napi_get_value_bigint_int64(env, v, &n, &lossless); /* BigInt.asIntN(64, v) */
      lua_pushinteger(L, (lua_Integer)n);
      return;
    }
    case napi_string:
      push_string(e, L, v);
      return;
    case napi_function: {
      napi_value name;
      napi_valuetype nt = napi_undefined;
      size_t len = 0;
      if (napi_get_named_property(env, v, "name", &name) == napi_ok) napi_typeof(env, name, &nt);
      if (nt == napi_string) napi_get_value_string_utf8(env, name, NULL, 0, &len);
      if (nt != napi_string || len == 0) napi_create_string_utf8(env, "?", 1, &name);
      push_host_function(e, L, v, name);
      return;
    }
    case napi_object: {
      bool is_typed;
      napi_is_typedarray(env, v, &is_typed);
      if (is_typed) {
        napi_typedarray_type type;
        size_t length;
        void *data;
        napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL);
        if (type == napi_uint8_array) {
          lua_pushlstring(L, length ? (const char *)data : "", length);
          return;
        }
      } else if (is_lua_ref(e, v)) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref_id_of(e, L, v));
        return;
      }
      push_table(e, L, v, depth);
      return;
    }
    case napi_symbol:
      conv_fail(e, L, CONV_TYPE_ERROR, "cannot pass a symbol to Lua");
      return;
    default:
      conv_fail(e, L, CONV_TYPE_ERROR, "cannot pass this value to Lua");
  }
}

typedef struct {
  napi_value *values;
  size_t count;
  napi_value array; /* or an array to read values from */
} push_ctx;

/* Job: pushes ctx's values (from `values`, or the elements of `array`). */
static void push_job(engine *e, lua_State *L, void *p) {
  push_ctx *c = p;
  luaL_checkstack(L, (int)c->count + 2, "too many values");
  for (size_t i = 0; i < c->count; i++) {
    napi_value v;
    if (c->array != NULL) napi_get_element(e->env, c->array, (uint32_t)i, &v);
    else v = c->values[i];
    push_js(e, L, v, 0);
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Host functions */

static int host_gc(lua_State *L) {
  engine *e = engine_of(L);
  int id = *(int *)lua_touserdata(L, 1);
  if (!e->no_js) {
    napi_value fns, names, undefined;
    napi_get_undefined(e->env, &undefined);
    napi_get_reference_value(e->env, e->host_fns, &fns);
    napi_get_reference_value(e->env, e->host_names, &names);
    napi_set_element(e->env, fns, (uint32_t)id, undefined);
    napi_set_element(e->env, names, (uint32_t)id, undefined);
  }
  if (e->nfree == e->capfree) {
    size_t cap = e->capfree ? e->capfree * 2 : 64;
    int *ids = realloc(e->free_ids, cap * sizeof(int));
    if (ids == NULL) return 0; /* the id is not reused */
    e->free_ids = ids;
    e->capfree = cap;
  }
  e->free_ids[e->nfree++] = id;
  return 0;
}

/* Raises `message` as a Lua error at the caller's position (unless already positioned). */
static int raise_host_error(lua_State *L, const char *message, size_t len, int positioned) {
  if (!positioned) luaL_where(L, 1);
  lua_pushlstring(L, message, len);
  if (!positioned) lua_concat(L, 2);
  return lua_error(L);
}

/* Copies a JS string into e->host_error (kept by the engine, so raising cannot leak it). */
static void copy_js_string(engine *e, napi_value text) {
  size_t len = 0;
  napi_get_value_string_utf8(e->env, text, NULL, 0, &len);
  strbuf_set(&e->host_error, "", 0);
  if (len + 1 > e->host_error.cap) {
    char *data = realloc(e->host_error.data, len + 1);
    if (data == NULL) return;
    e->host_error.data = data;
    e->host_error.cap = len + 1;
  }
  napi_get_value_string_utf8(e->env, text, e->host_error.data, len + 1, &len);
  e->host_error.len = len;
}

/* Trampoline of every host function: calls the adapter's dispatcher with (id, depth, argc). */
static int host_call(lua_State *L) {
  engine *e = engine_of(L);
  if (e->no_js) return luaL_error(L, "the Lua engine is closed");
  if (e->host_depth >= MAX_HOST_DEPTH) return luaL_error(L, "too many nested calls into Lua");
  napi_env env = e->env;
  int id = *(int *)lua_touserdata(L, lua_upvalueindex(1));
  int argc = lua_gettop(L);
  int depth = e->host_depth;
  e->host_L[e->host_depth++] = L;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, undefined, result;
  napi_get_reference_value(env, e->dispatch, &fn);
  napi_get_undefined(env, &undefined);
  /* The call's id, depth and argument count go through the shared ints: no JS values to make. */
  e->shared_data[0] = RESULT_NONE;
  e->shared_data[1] = id;
  e->shared_data[2] = depth;
  e->shared_data[3] = argc;
  e->arg_scratch_top = 0;
  napi_status status = napi_call_function(env, undefined, fn, 0, NULL, &result);
  e->host_depth--;
  int mode = e->shared_data[0];
  if (status != napi_ok) {
    /* The dispatcher catches everything; this is e.g. a JS stack overflow before it could. */
    napi_value exception, text;
    napi_get_and_clear_last_exception(env, &exception);
    if (napi_coerce_to_string(env, exception, &text) == napi_ok) {
      copy_js_string(e, text);
    } else {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
      strbuf_set(&e->host_error, "host function failed", 20);
    }
    mode = RESULT_ERROR;
  } else if (mode == RESULT_ERROR || mode == RESULT_LUA_ERROR) {
    copy_js_string(e, result);
  }
  if (mode == RESULT_ERROR || mode == RESULT_LUA_ERROR || mode == RESULT_MEMORY_ERROR) {
    napi_close_handle_scope(env, scope);
    lua_settop(L, 0);
    if (mode == RESULT_MEMORY_ERROR) return raise_memory_error(e, L);
    return raise_host_error(L, e->host_error.data ? e->host_error.data : "", e->host_error.len,
                            mode == RESULT_LUA_ERROR);
  }
  if (mode == RESULT_NONE) {
    napi_close_handle_scope(env, scope);
    return 0;
  }
  if (mode == RESULT_ONE) {
    /* Results that cannot allocate need no protected job. */
    napi_valuetype t;
    napi_typeof(env, result, &t);
    if (t == napi_boolean || t == napi_number || t == napi_null || t == napi_undefined) {
      push_js(e, L, result, 0);
      napi_close_handle_scope(env, scope);
      return 1;
    }
  }
  push_ctx c = {NULL, 1, NULL};
  if (mode == RESULT_ONE) {
    c.values = &result;
  } else {
    uint32_t length;
    napi_get_array_length(env, result, &length);
    c.array = result;
    c.count = length;
  }
  int base = lua_gettop(L);
  int pushed = job_pcall(e, L, push_job, &c, 0, 1);
  int kind = e->conv_kind;
  e->conv_kind = CONV_NONE;
  if (pushed != LUA_OK && kind == CONV_JS_EXCEPTION) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    snprintf(e->conv_message, sizeof e->conv_message, "cannot pass a value to Lua");
  }
  napi_close_handle_scope(env, scope);
  if (pushed != LUA_OK) {
    if (kind != CONV_NONE) {
      lua_settop(L, base);
      return raise_host_error(L, e->conv_message, strlen(e->conv_message), 0);
    }
    if (pushed == LUA_ERRMEM) return raise_memory_error(e, L);
    return lua_error(L);
  }
  int n = lua_gettop(L) - base;
  if (mode == RESULT_YIELD) return lua_yield(L, n);
  return n;
}

/* ------------------------------------------------------------------------------------------- */
/* Entries */

static engine *get_engine(napi_env env, napi_value handle) {
  engine *e = NULL;
  napi_get_value_external(env, handle, (void **)&e);
  return e;
}

/* Checks that the engine can be entered; throws the ERR_LUA_ENGINE error otherwise. */
static int usable(engine *e) {
  if (e->closed || e->close_requested) {
    throw_lua_error(e, "ERR_LUA_ENGINE", "the Lua engine is closed");
    return 0;
  }
  return 1;
}

static void engine_close_now(engine *e);

/* Starts an entry into Lua; the outermost one starts the CPU budget. */
static int enter(engine *e) {
  if (!usable(e)) return 0;
  if (e->depth == 0) {
    budget_reset(e); /* started by the first budget check, see budget_hook */
    e->budget_spent = 0;
    e->allocation_refused = 0;
  } else if (e->depth >= MAX_NESTING) {
    throw_lua_error(e, "ERR_LUA_ENGINE", "too many nested calls into Lua");
    return 0;
  }
  e->depth++;
  return 1;
}

static void leave(engine *e) {
  if (--e->depth > 0) return;
  if (e->scratch.cap > 1024 * 1024) {
    free(e->scratch.data);
    e->scratch.data = NULL;
    e->scratch.cap = 0;
  }
  if (e->close_requested) {
    e->close_requested = 0;
    engine_close_now(e);
  }
}

static void engine_close_now(engine *e) {
  if (e->closed) return;
  e->closed = 1;
  /* __close and host __gc run now, under a fresh CPU budget. */
  budget_reset(e);
  e->budget_spent = 0;
  e->depth++;
  lua_close(e->L);
  e->depth--;
  e->L = NULL;
}

#define ARGS(n)                                                                                   \
  size_t argc = (n);                                                                              \
  napi_value argv[(n) > 0 ? (n) : 1];                                                             \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);                                           \
  engine *e = get_engine(env, argv[0]);                                                           \
  if (e == NULL) {                                                                                \
    napi_throw_type_error(env, NULL, "not a Lua engine handle");                                  \
    return NULL;                                                                                  \
  }

static napi_value undefined_value(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

static int32_t int_arg(napi_env env, napi_value v) {
  int32_t n = 0;
  napi_get_value_int32(env, v, &n);
  return n;
}

/* Copies a JS string or Uint8Array argument into a malloc'd buffer. */
static char *bytes_arg(napi_env env, napi_value v, size_t *len) {
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (is_typed) {
    void *data;
    napi_get_typedarray_info(env, v, NULL, len, &data, NULL, NULL);
    char *copy = malloc(*len + 1);
    if (copy && *len) memcpy(copy, data, *len);
    if (copy) copy[*len] = 0;
    return copy;
  }
  napi_get_value_string_utf8(env, v, NULL, 0, len);
  char *copy = malloc(*len + 1);
  if (copy) napi_get_value_string_utf8(env, v, copy, *len + 1, len);
  return copy;
}

/* ---- create / close ---- */

static void finalize_engine(napi_env env, void *data, void *hint) {
  (void)hint;
  engine *e = data;
  e->no_js = 1; /* finalizers must not call into JS */
  if (!e->closed) engine_close_now(e);
  const napi_ref refs[] = {e->adapter, e->dispatch, e->make_ref, e->make_error, e->ref_class,
                           e->host_fns, e->host_names, e->shared, e->log, e->object_proto,
                           e->arg_scratch_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (refs[i]) napi_delete_reference(env, refs[i]);
  }
  free(e->free_ids);
  free(e->pending_msg.data);
  free(e->pending_tb.data);
  free(e->scratch.data);
  free(e->warning.data);
  free(e->host_error.data);
  free(e);
}

static napi_ref ref_prop(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  napi_ref ref = NULL;
  if (napi_get_named_property(env, obj, name, &v) == napi_ok) napi_create_reference(env, v, 1, &ref);
  return ref;
}

static void open_libs_job(engine *e, lua_State *L, void *p) {
  (void)p;
  luaL_openlibs(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, host_gc);
  lua_setfield(L, -2, "__gc");
  e->host_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* create(memoryLimitBytes, cpuBudgetMs, callbacks) -> handle */
static napi_value js_create(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  engine *e = calloc(1, sizeof *e);
  if (e == NULL) {
    napi_throw_error(env, "ERR_LUA_MEMORY", "cannot allocate a Lua engine");
    return NULL;
  }
  e->env = env;
  double max;
  napi_get_value_double(env, argv[0], &max);
  napi_get_value_double(env, argv[1], &e->budget_ms);
  e->max = (size_t)max;
  napi_value cb = argv[2], shared, global, object, proto;
  e->adapter = ref_prop(env, cb, "adapter");
  e->dispatch = ref_prop(env, cb, "dispatch");
  e->make_ref = ref_prop(env, cb, "makeRef");
  e->make_error = ref_prop(env, cb, "makeError");
  e->ref_class = ref_prop(env, cb, "refClass");
  e->host_fns = ref_prop(env, cb, "hostFunctions");
  e->host_names = ref_prop(env, cb, "hostNames");
  e->log = ref_prop(env, cb, "log");
  e->shared = ref_prop(env, cb, "shared");
  napi_get_named_property(env, cb, "shared", &shared);
  napi_get_typedarray_info(env, shared, NULL, NULL, (void **)&e->shared_data, NULL, NULL);
  napi_value arg_scratch;
  napi_get_named_property(env, cb, "argScratch", &arg_scratch);
  napi_get_typedarray_info(env, arg_scratch, NULL, &e->arg_scratch_size, (void **)&e->arg_scratch,
                           NULL, NULL);
  e->arg_scratch_ref = NULL;
  napi_create_reference(env, arg_scratch, 1, &e->arg_scratch_ref);
  napi_get_global(env, &global);
  napi_get_named_property(env, global, "Object", &object);
  napi_get_named_property(env, object, "prototype", &proto);
  napi_create_reference(env, proto, 1, &e->object_proto);

  napi_value handle;
  napi_create_external(env, e, finalize_engine, NULL, &handle);
  lua_State *L = lua_newstate(engine_alloc, e);
  if (L == NULL) {
    e->closed = 1;
    throw_lua_error(e, "ERR_LUA_MEMORY", "cannot create a Lua state");
    return NULL;
  }
  e->L = L;
  lua_atpanic(L, on_panic);
  lua_setwarnf(L, on_warning, e);
  /* Threads inherit the hook of the thread that creates them, so setting it here covers all. */
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_INTERVAL);
  const unsigned char *raw = (const unsigned char *)L;
  e->can_reenable_hooks = raw[THREAD_TYPE_TAG_OFFSET] == LUA_VTHREAD_TAG && raw[ALLOWHOOK_OFFSET] == 1;
  if (!e->can_reenable_hooks) {
    const char *warning = "unexpected lua_State layout: xpcall message handlers escape the CPU budget";
    call_log(e, "warn", warning, strlen(warning));
  }
  e->depth++;
  budget_reset(e);
  int failed = run_job(e, L, open_libs_job, NULL, 0);
  e->depth--;
  if (failed) return NULL;
  return handle;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1);
  if (e->closed) return undefined_value(env);
  if (e->depth > 0) e->close_requested = 1;
  else engine_close_now(e);
  return undefined_value(env);
}

static napi_value js_state(napi_env env, napi_callback_info info) {
  ARGS(1);
  /* [closed, memory used, depth] */
  napi_value result, v;
  napi_create_array_with_length(env, 3, &result);
  napi_get_boolean(env, e->closed, &v);
  napi_set_element(env, result, 0, v);
  napi_create_double(env, (double)e->used, &v);
  napi_set_element(env, result, 1, v);
  napi_create_int32(env, e->depth, &v);
  napi_set_element(env, result, 2, v);
  return result;
}

static napi_value js_memory_used(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value v;
  napi_create_double(env, (double)e->used, &v);
  return v;
}

static napi_value js_is_closed(napi_env env, napi_callback_info info) {
  ARGS(1);
  napi_value v;
  napi_get_boolean(env, e->closed, &v);
  return v;
}

/* ---- load / call ---- */

typedef struct {
  const char *code;
  size_t len;
  const char *name;
  int status;
  strbuf message;
  int id;
} load_ctx;

static void load_job(engine *e, lua_State *L, void *p) {
  load_ctx *c = p;
  c->status = luaL_loadbufferx(L, c->code, c->len, c->name, "t");
  if (c->status != LUA_OK) {
    describe_error(e, L, -1, 0, &c->message);
    lua_pop(L, 1);
    return;
  }
  c->id = luaL_ref(L, LUA_REGISTRYINDEX);
}

static napi_value ref_from_id(engine *e, int id, int type) {
  napi_env env = e->env;
  napi_value fn, argv[2], undefined, result;
  napi_get_reference_value(env, e->make_ref, &fn);
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, id, &argv[0]);
  napi_create_int32(env, type, &argv[1]);
  if (napi_call_function(env, undefined, fn, 2, argv, &result) != napi_ok) return NULL;
  return result;
}

/* load(h, source, chunkName) -> LuaRef */
static napi_value js_load(napi_env env, napi_callback_info info) {
  ARGS(3);
  size_t len, name_len;
  char *code = bytes_arg(env, argv[1], &len);
  char *name = bytes_arg(env, argv[2], &name_len);
  if (!enter(e)) {
    free(code);
    free(name);
    return NULL;
  }
  load_ctx c = {code, len, name, LUA_OK, {0}, 0};
  napi_value result = NULL;
  if (run_job(e, e->L, load_job, &c, 0) == 0) {
    if (c.status != LUA_OK) {
      napi_value err = make_lua_error(e, c.status == LUA_ERRMEM ? "ERR_LUA_MEMORY" : "ERR_LUA_SYNTAX",
                                      c.message.data ? c.message.data : "", c.message.len, NULL, 0);
      if (err) napi_throw(env, err);
    } else {
      result = ref_from_id(e, c.id, LUA_TFUNCTION);
    }
  }
  free(c.message.data);
  free(code);
  free(name);
  leave(e);
  return result;
}

/* True when `args` can be pushed outside a job: no tables or functions to build, and enough
 * free memory that the strings cannot fail to allocate. */
static int can_push_unprotected(engine *e, napi_value array, uint32_t count) {
  napi_env env = e->env;
  size_t bytes = 0;
  for (uint32_t i = 0; i < count; i++) {
    napi_value v;
    napi_valuetype t;
    napi_get_element(env, array, i, &v);
    napi_typeof(env, v, &t);
    switch (t) {
      case napi_undefined:
      case napi_null:
      case napi_boolean:
      case napi_number:
      case napi_bigint:
        break;
      case napi_string: {
        size_t len;
        napi_get_value_string_utf8(env, v, NULL, 0, &len);
        bytes += len + 32;
        break;
      }
      case napi_object: {
        bool is_typed;
        napi_is_typedarray(env, v, &is_typed);
        if (is_typed) {
          napi_typedarray_type type;
          size_t length;
          napi_get_typedarray_info(env, v, &type, &length, NULL, NULL, NULL);
          if (type != napi_uint8_array) return 0;
          bytes += length + 32;
          break;
        }
        return 0; /* refs are checked inside a job, where a bad one can be reported */
      }
      default:
        return 0;
    }
  }
  return e->used + bytes + 256 * 1024 <= e->max;
}

typedef struct {
  int fn_id;
  napi_value args;
  uint32_t nargs;
  napi_value result;
} call_ctx;

/* Job: the slow path of call: pushes everything, calls, converts the results. */
static void call_job(engine *e, lua_State *L, void *p) {
  call_ctx *c = p;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->fn_id);
  push_ctx pc = {NULL, c->nargs, c->args};
  push_job(e, L, &pc);
  lua_call(L, (int)c->nargs, LUA_MULTRET);
  values_ctx vc = {.from = 1, .result = NULL};
  values_job(e, L, &vc);
  c->result = vc.result;
  lua_settop(L, 0);
}

static napi_value check_budget_after(engine *e, napi_value result) {
  if (result != NULL && e->budget_spent) {
    throw_lua_error(e, "ERR_LUA_CPU_BUDGET", "cpu budget exceeded");
    return NULL;
  }
  return result;
}

/* call(h, fnRefId, argsArray) -> values */
static napi_value js_call(napi_env env, napi_callback_info info) {
  ARGS(3);
  int fn_id = int_arg(env, argv[1]);
  uint32_t nargs;
  napi_get_array_length(env, argv[2], &nargs);
  if (!enter(e)) return NULL;
  lua_State *L = e->L;
  int base = lua_gettop(L);
  napi_value result = NULL;
  if (!can_push_unprotected(e, argv[2], nargs) || !lua_checkstack(L, (int)nargs + 3)) {
    call_ctx c = {fn_id, argv[2], nargs, NULL};
    if (run_job(e, L, call_job, &c, 0) == 0) result = check_budget_after(e, c.result);
  } else {
    lua_pushcfunction(L, message_handler);
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_id);
    for (uint32_t i = 0; i < nargs; i++) {
      napi_value v;
      napi_get_element(env, argv[2], i, &v);
      push_js(e, L, v, 0); /* simple values only: cannot raise */
    }
    e->has_pending = 0;
    int status = lua_pcall(L, (int)nargs, LUA_MULTRET, base + 1);
    if (status != LUA_OK) {
      napi_value err = take_error(e, L, status);
      if (err) napi_throw(env, err);
    } else if (e->budget_spent) {
      throw_lua_error(e, "ERR_LUA_CPU_BUDGET", "cpu budget exceeded");
    } else {
      result = take_results(e, L, base + 1);
    }
  }
  if (e->L) lua_settop(L, base);
  leave(e);
  return result;
}

/* ---- globals, registration, refs, preload ---- */

typedef struct {
  napi_value name, value, table;
  napi_value result;
  int id;
  int kind;
} misc_ctx;

static void get_global_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  push_string(e, L, c->name);
  lua_rawget(L, -2);
  walk_state w = {.n = 0, .entries = 0};
  c->result = value_to_js(e, L, -1, 0, &w);
}

static void set_global_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  push_string(e, L, c->name);
  push_js(e, L, c->value, 0);
  lua_rawset(L, -3);
}

static napi_value run_misc(napi_env env, engine *e, job_fn fn, misc_ctx *c) {
  if (!enter(e)) return NULL;
  napi_value result = NULL;
  if (run_job(e, e->L, fn, c, 0) == 0) result = c->result ? c->result : undefined_value(env);
  leave(e);
  return result;
}

static napi_value js_get_global(napi_env env, napi_callback_info info) {
  ARGS(2);
  misc_ctx c = {.name = argv[1]};
  return run_misc(env, e, get_global_job, &c);
}

static napi_value js_set_global(napi_env env, napi_callback_info info) {
  ARGS(3);
  misc_ctx c = {.name = argv[1], .value = argv[2]};
  return run_misc(env, e, set_global_job, &c);
}

/* Job: table path (array of parts or null), name, fn. */
static void register_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  napi_env env = e->env;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  napi_valuetype t;
  napi_typeof(env, c->table, &t);
  napi_value full_name = c->name;
  if (t == napi_object) {
    uint32_t parts;
    napi_get_array_length(env, c->table, &parts);
    for (uint32_t i = 0; i < parts; i++) {
      napi_value part;
      napi_get_element(env, c->table, i, &part);
      int parent = lua_gettop(L);
      push_string(e, L, part);
      if (lua_rawget(L, parent) != LUA_TTABLE) {
        lua_settop(L, parent);
        lua_createtable(L, 0, 4);
        push_string(e, L, part);
        lua_pushvalue(L, -2);
        lua_rawset(L, parent);
      }
    }
    full_name = c->value; /* the qualified name, for argument errors */
  }
  push_string(e, L, c->name);
  push_host_function(e, L, c->result, full_name);
  lua_rawset(L, -3);
  c->result = NULL;
}

/* registerFunction(h, tableParts|null, name, qualifiedName, fn) */
static napi_value js_register(napi_env env, napi_callback_info info) {
  ARGS(5);
  misc_ctx c = {.table = argv[1], .name = argv[2], .value = argv[3], .result = argv[4]};
  return run_misc(env, e, register_job, &c);
}

static void create_ref_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  push_js(e, L, c->value, 0);
  c->result = make_ref_js(e, L, -1);
}

static napi_value js_create_ref(napi_env env, napi_callback_info info) {
  ARGS(2);
  misc_ctx c = {.value = argv[1]};
  return run_misc(env, e, create_ref_job, &c);
}

/* Job: package.preload[name] = loader; kind 0 source, 1 host function, 2 function ref, 3 value
 * ref (wrapped in a loader returning it). */
static int return_upvalue(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

typedef struct {
  misc_ctx base;
  const char *code;
  size_t len;
  const char *chunk_name;
  int load_status;
  strbuf message;
} preload_ctx;

static void preload_job(engine *e, lua_State *L, void *p) {
  preload_ctx *c = p;
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  push_string(e, L, c->base.name);
  switch (c->base.kind) {
    case 0:
      c->load_status = luaL_loadbufferx(L, c->code, c->len, c->chunk_name, "t");
      if (c->load_status != LUA_OK) {
        describe_error(e, L, -1, 0, &c->message);
        lua_settop(L, 0);
        return;
      }
      break;
    case 1:
      push_host_function(e, L, c->base.value, c->base.name);
      break;
    case 2:
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->base.id);
      break;
    default:
      lua_rawgeti(L, LUA_REGISTRYINDEX, c->base.id);
      lua_pushcclosure(L, return_upvalue, 1);
  }
  lua_rawset(L, -3);
}

/* preload(h, name, kind, module, chunkName) */
static napi_value js_preload(napi_env env, napi_callback_info info) {
  ARGS(5);
  preload_ctx c = {.base = {.name = argv[1], .value = argv[3]}};
  c.base.kind = int_arg(env, argv[2]);
  char *code = NULL, *chunk_name = NULL;
  size_t name_len;
  if (c.base.kind == 0) {
    code = bytes_arg(env, argv[3], &c.len);
    chunk_name = bytes_arg(env, argv[4], &name_len);
    c.code = code;
    c.chunk_name = chunk_name;
  } else if (c.base.kind >= 2) {
    c.base.id = int_arg(env, argv[3]);
  }
  if (!enter(e)) {
    free(code);
    free(chunk_name);
    return NULL;
  }
  napi_value result = NULL;
  if (run_job(e, e->L, preload_job, &c, 0) == 0) {
    if (c.load_status != LUA_OK) {
      const char *kind = c.load_status == LUA_ERRMEM ? "ERR_LUA_MEMORY" : "ERR_LUA_SYNTAX";
      napi_value err = make_lua_error(e, kind, c.message.data ? c.message.data : "", c.message.len, NULL, 0);
      if (err) napi_throw(env, err);
    } else {
      result = undefined_value(env);
    }
  }
  free(c.message.data);
  free(code);
  free(chunk_name);
  leave(e);
  return result;
}

/* ---- budget ---- */

static void epoch_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  lua_createtable(L, 1, 0);
  /* Where t[1] lives, so that the allocator can read it without touching the Lua stack: the
   * first slot of the table's array part. Checked with two values; the table is never resized
   * (only t[1] is ever set). */
  const unsigned char *table = lua_topointer(L, -1);
  lua_Integer *slot = *(lua_Integer *const *)(table + TABLE_ARRAY_OFFSET);
  int verified = slot != NULL && ((uintptr_t)slot % 8) == 0;
  const lua_Integer probes[2] = {0x5a5a5a5a, 0};
  for (int i = 0; i < 2; i++) {
    lua_pushinteger(L, probes[i]);
    lua_rawseti(L, -2, 1);
    verified = verified && *slot == probes[i];
  }
  e->epoch_slot = verified ? slot : NULL;
  lua_pushvalue(L, -1);
  e->epoch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->result = make_ref_js(e, L, -1);
}

/* budgetEpoch(h) -> LuaRef (the adapter caches it) */
static napi_value js_budget_epoch(napi_env env, napi_callback_info info) {
  ARGS(1);
  misc_ctx c = {0};
  return run_misc(env, e, epoch_job, &c);
}

static napi_value js_budget_left(napi_env env, napi_callback_info info) {
  ARGS(1);
  double left = e->depth == 0 ? e->budget_ms : e->budget_spent ? 0 : budget_left(e);
  napi_value v;
  napi_create_double(env, left, &v);
  return v;
}

/* ---- coroutines ---- */

static void new_thread_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  lua_State *co = lua_newthread(L);
  c->result = make_ref_js(e, L, -1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->id);
  lua_xmove(L, co, 1);
}

static napi_value js_new_thread(napi_env env, napi_callback_info info) {
  ARGS(2);
  misc_ctx c = {.id = int_arg(env, argv[1])};
  return run_misc(env, e, new_thread_job, &c);
}

static lua_State *thread_of(engine *e, int id) {
  lua_rawgeti(e->L, LUA_REGISTRYINDEX, id);
  lua_State *co = lua_tothread(e->L, -1);
  lua_pop(e->L, 1);
  return co;
}

/* threadStatus(h, id) -> 0 suspended, 1 running, 2 dead (as the WebAssembly engine decides) */
static napi_value js_thread_status(napi_env env, napi_callback_info info) {
  ARGS(2);
  napi_value v;
  if (!usable(e)) return NULL;
  lua_State *co = thread_of(e, int_arg(env, argv[1]));
  int status = 2;
  if (co != NULL) {
    int s = lua_status(co);
    lua_Debug ar;
    if (s == LUA_YIELD) status = 0;
    else if (s != LUA_OK) status = 2;
    else if (co == e->L || lua_getstack(co, 0, &ar)) status = 1;
    else status = lua_gettop(co) == 0 ? 2 : 0;
  }
  napi_create_int32(env, status, &v);
  return v;
}

typedef struct {
  lua_State *co;
  int status;
  strbuf message, traceback;
} thread_error_ctx;

static void thread_error_job(engine *e, lua_State *L, void *p) {
  thread_error_ctx *c = p;
  lua_xmove(c->co, L, 1);
  if (c->status == LUA_ERRMEM) strbuf_set(&c->message, "not enough memory", 17);
  else describe_error(e, L, 1, 1, &c->message);
  luaL_traceback(L, c->co, NULL, 0);
  size_t len;
  const char *tb = lua_tolstring(L, -1, &len);
  strbuf_set(&c->traceback, tb, len);
}

/* Message and traceback of a coroutine that died with `status`; closes it. */
static napi_value take_thread_error(engine *e, lua_State *co, int status) {
  const char *code = status == LUA_ERRMEM ? "ERR_LUA_MEMORY" : "ERR_LUA_RUNTIME";
  if (e->budget_spent && status != LUA_ERRMEM) code = "ERR_LUA_CPU_BUDGET";
  if (status == LUA_ERRMEM && e->allocation_refused) code = "ERR_LUA_CPU_BUDGET";
  thread_error_ctx c = {co, status, {0}, {0}};
  lua_State *L = e->L;
  int base = lua_gettop(L);
  int job_status = job_pcall(e, L, thread_error_job, &c, 0, 0);
  if (job_status != LUA_OK || c.message.data == NULL) {
    /* Out of memory or budget while describing the error: keep the defaults. */
    e->has_pending = 0;
    e->conv_kind = CONV_NONE;
    strbuf_set(&c.message, "not enough memory", 17);
    strbuf_set(&c.traceback, "", 0);
  }
  lua_settop(L, base);
  /* Runs pending to-be-closed variables of the dead coroutine, as coroutine.close would. */
  lua_resetthread(co);
  napi_value err = make_lua_error(e, code, c.message.data ? c.message.data : "", c.message.len,
                                  c.traceback.data, c.traceback.len);
  free(c.message.data);
  free(c.traceback.data);
  return err;
}

/* Builds [status, payload]: 0 yield / 1 done with values, 2 error with a LuaError. */
static napi_value resume_result(napi_env env, int status, napi_value payload) {
  napi_value result, code;
  napi_create_array_with_length(env, 2, &result);
  napi_create_int32(env, status, &code);
  napi_set_element(env, result, 0, code);
  napi_set_element(env, result, 1, payload);
  return result;
}

typedef struct {
  lua_State *co;
  push_ctx push;
} resume_push_ctx;

static void resume_push_job(engine *e, lua_State *L, void *p) {
  resume_push_ctx *c = p;
  push_job(e, L, &c->push);
  lua_xmove(L, c->co, (int)c->push.count);
}

/* resume(h, threadId, argsArray) -> [status, values | error] */
static napi_value js_resume(napi_env env, napi_callback_info info) {
  ARGS(3);
  uint32_t nargs;
  napi_get_array_length(env, argv[2], &nargs);
  if (!enter(e)) return NULL;
  lua_State *L = e->L;
  lua_State *co = thread_of(e, int_arg(env, argv[1]));
  int base = lua_gettop(L);
  napi_value result = NULL;
  if (co == NULL || co == L || !lua_checkstack(co, (int)nargs + 1)) {
    throw_lua_error(e, "ERR_LUA_ENGINE", co == NULL || co == L ? "cannot resume this thread"
                                                               : "too many arguments to resume");
    leave(e);
    return NULL;
  }
  if (can_push_unprotected(e, argv[2], nargs) && lua_checkstack(L, (int)nargs)) {
    for (uint32_t i = 0; i < nargs; i++) {
      napi_value v;
      napi_get_element(env, argv[2], i, &v);
      push_js(e, L, v, 0);
    }
    lua_xmove(L, co, (int)nargs);
  } else {
    resume_push_ctx c = {co, {NULL, nargs, argv[2]}};
    if (run_job(e, L, resume_push_job, &c, 0) != 0) {
      leave(e);
      return NULL;
    }
  }
  int nres = 0;
  int status = lua_resume(co, L, (int)nargs, &nres);
  if ((status == LUA_OK || status == LUA_YIELD) && e->budget_spent) {
    lua_settop(co, 0);
    napi_value err = make_lua_error(e, "ERR_LUA_CPU_BUDGET", "cpu budget exceeded", 19, NULL, 0);
    result = err ? resume_result(env, 2, err) : NULL;
  } else if (status == LUA_OK || status == LUA_YIELD) {
    if (!lua_checkstack(L, nres + 2)) {
      lua_pop(co, nres);
      throw_lua_error(e, "ERR_LUA_ENGINE", "too many results from coroutine");
    } else {
      lua_xmove(co, L, nres);
      napi_value values = take_results(e, L, base);
      if (values) result = resume_result(env, status == LUA_OK ? 1 : 0, values);
    }
  } else {
    napi_value err = take_thread_error(e, co, status);
    if (err) result = resume_result(env, 2, err);
  }
  if (e->L) lua_settop(L, base);
  leave(e);
  return result;
}

/* ---- misc ---- */

static void gc_job(engine *e, lua_State *L, void *p) {
  (void)e;
  (void)p;
  lua_gc(L, LUA_GCCOLLECT);
}

static napi_value js_collect_garbage(napi_env env, napi_callback_info info) {
  ARGS(1);
  if (!enter(e)) return NULL;
  napi_value result = run_job(e, e->L, gc_job, NULL, 0) == 0 ? undefined_value(env) : NULL;
  leave(e);
  return result;
}

static napi_value js_unref(napi_env env, napi_callback_info info) {
  ARGS(2);
  /* No Lua code runs and nothing is allocated: safe at any time, even during a host call. */
  if (!e->closed && lua_checkstack(e->L, 2)) luaL_unref(e->L, LUA_REGISTRYINDEX, int_arg(env, argv[1]));
  return undefined_value(env);
}

static int os_clock(lua_State *L) {
  lua_pushnumber(L, now_ms(CLOCK_THREAD_CPUTIME_ID) / 1000.0);
  return 1;
}

static void clock_job(engine *e, lua_State *L, void *p) {
  misc_ctx *c = p;
  lua_pushcfunction(L, os_clock);
  c->result = make_ref_js(e, L, -1);
}

/* cpuClock(h) -> LuaRef to a C function returning the thread's CPU seconds (for os.clock). */
static napi_value js_cpu_clock(napi_env env, napi_callback_info info) {
  ARGS(1);
  misc_ctx c = {0};
  return run_misc(env, e, clock_job, &c);
}

/* ---- host function arguments: (h, depth, i) ---- */

static lua_State *arg_state(engine *e, napi_env env, napi_value depth) {
  int d = int_arg(env, depth);
  if (d < 0 || d >= e->host_depth) {
    napi_throw_error(env, NULL, "LuaArgs used after its host function returned");
    return NULL;
  }
  return e->host_L[d];
}

#define ARG_PROLOGUE                                                                              \
  ARGS(3);                                                                                        \
  lua_State *L = arg_state(e, env, argv[1]);                                                      \
  if (L == NULL) return NULL;                                                                     \
  int i = int_arg(env, argv[2]);                                                                  \
  int t = i > lua_gettop(L) ? LUA_TNONE : lua_type(L, i);

static napi_value js_arg_type(napi_env env, napi_callback_info info) {
  ARG_PROLOGUE;
  napi_value v;
  napi_create_int32(env, t, &v);
  return v;
}

/* The bytes of a string or number argument (as a Buffer when as_buffer, else text). */
static napi_value arg_bytes(napi_env env, napi_callback_info info, int as_buffer) {
  ARG_PROLOGUE;
  const char *s;
  size_t len;
  char buf[64];
  if (t == LUA_TSTRING) {
    s = lua_tolstring(L, i, &len);
  } else if (t == LUA_TNUMBER) {
    len = format_number(L, i, buf, sizeof buf);
    s = buf;
  } else {
    return undefined_value(env);
  }
  napi_value v;
  if (as_buffer && e->arg_scratch_size - e->arg_scratch_top >= len) {
    /* Into the scratch the adapter reads from: far cheaper than a Buffer made here. Returns
     * the length; the offset goes in shared[1]. */
    size_t offset = e->arg_scratch_top;
    if (len) memcpy(e->arg_scratch + offset, s, len);
    e->arg_scratch_top = (offset + len + 7) & ~(size_t)7;
    e->shared_data[1] = (int32_t)offset;
    napi_create_uint32(env, (uint32_t)len, &v);
  } else if (as_buffer) {
    void *data;
    napi_create_buffer_copy(env, len, len ? s : "", &data, &v);
  } else {
    napi_create_string_utf8(env, s, len, &v);
  }
  return v;
}

static napi_value js_arg_bytes(napi_env env, napi_callback_info info) { return arg_bytes(env, info, 1); }
static napi_value js_arg_text(napi_env env, napi_callback_info info) { return arg_bytes(env, info, 0); }

static napi_value js_arg_integer(napi_env env, napi_callback_info info) {
  ARG_PROLOGUE;
  int isnum = 0;
  lua_Integer n = t == LUA_TNONE ? 0 : lua_tointegerx(L, i, &isnum);
  if (!isnum) return undefined_value(env);
  napi_value v;
  napi_create_double(env, (double)n, &v);
  return v;
}

static napi_value js_arg_number(napi_env env, napi_callback_info info) {
  ARG_PROLOGUE;
  int isnum = 0;
  lua_Number n = t == LUA_TNONE ? 0 : lua_tonumberx(L, i, &isnum);
  if (!isnum) return undefined_value(env);
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

static napi_value js_arg_boolean(napi_env env, napi_callback_info info) {
  ARG_PROLOGUE;
  napi_value v;
  napi_get_boolean(env, t != LUA_TNONE && lua_toboolean(L, i), &v);
  return v;
}

typedef struct {
  int index;
  int as_ref;
  napi_value result;
} arg_value_ctx;

static void arg_value_job(engine *e, lua_State *L, void *p) {
  arg_value_ctx *c = p;
  walk_state w = {.n = 0, .entries = 0};
  if (c->as_ref) c->result = make_ref_js(e, L, c->index);
  else c->result = value_to_js(e, L, c->index, 0, &w);
}

/* argValue(h, depth, i, asRef): the argument converted (tables walked, others as refs). */
static napi_value js_arg_value(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  engine *e = get_engine(env, argv[0]);
  if (e == NULL) return NULL;
  lua_State *L = arg_state(e, env, argv[1]);
  if (L == NULL) return NULL;
  int i = int_arg(env, argv[2]);
  bool as_ref = false;
  napi_get_value_bool(env, argv[3], &as_ref);
  if (i > lua_gettop(L)) {
    napi_value v;
    napi_get_null(env, &v);
    return v;
  }
  if (!as_ref && is_simple_type(lua_type(L, i))) return simple_to_js(e, L, i);
  /* The job has a stack frame of its own: the argument goes in as the job's argument. */
  if (!lua_checkstack(L, 4)) {
    throw_lua_error(e, "ERR_LUA_ENGINE", "Lua stack overflow");
    return NULL;
  }
  lua_pushvalue(L, i);
  arg_value_ctx c = {1, as_ref, NULL};
  if (run_job(e, L, arg_value_job, &c, 1) != 0) return NULL;
  return c.result;
}

/* ------------------------------------------------------------------------------------------- */

#define EXPORT(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      EXPORT("create", js_create),
      EXPORT("close", js_close),
      EXPORT("isClosed", js_is_closed),
      EXPORT("memoryUsed", js_memory_used),
      EXPORT("state", js_state),
      EXPORT("load", js_load),
      EXPORT("call", js_call),
      EXPORT("getGlobal", js_get_global),
      EXPORT("setGlobal", js_set_global),
      EXPORT("registerFunction", js_register),
      EXPORT("createRef", js_create_ref),
      EXPORT("preload", js_preload),
      EXPORT("budgetEpoch", js_budget_epoch),
      EXPORT("budgetLeftMs", js_budget_left),
      EXPORT("newThread", js_new_thread),
      EXPORT("threadStatus", js_thread_status),
      EXPORT("resume", js_resume),
      EXPORT("collectGarbage", js_collect_garbage),
      EXPORT("unref", js_unref),
      EXPORT("cpuClock", js_cpu_clock),
      EXPORT("argType", js_arg_type),
      EXPORT("argBytes", js_arg_bytes),
      EXPORT("argText", js_arg_text),
      EXPORT("argInteger", js_arg_integer),
      EXPORT("argNumber", js_arg_number),
      EXPORT("argBoolean", js_arg_boolean),
      EXPORT("argValue", js_arg_value),
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value version;
  napi_create_string_utf8(env, LUA_RELEASE, NAPI_AUTO_LENGTH, &version);
  napi_set_named_property(env, exports, "luaVersion", version);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
