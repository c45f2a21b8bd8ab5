{
  "targets": [
    {
      "target_name": "lua_engine",
      "sources": ["native/lua_engine.c"],
      "include_dirs": [
        "<!@(sh -c 'pkg-config --cflags-only-I lua5.4 2>/dev/null | sed s/-I//g || true')",
        "/usr/include/lua5.4"
      ],
      "libraries": ["<!@(sh -c 'pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4')"],
      "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
