{
  "targets": [
    {
      "target_name": "checksum",
      "sources": ["src/checksum.c"],
      "cflags": ["-O2"]
    }
  ]
}
