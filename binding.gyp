{
  "targets": [
    {
      "target_name": "openssl_aead",
      "sources": ["native/openssl-aead.c"],
      "cflags": ["-O2", "-Wall"],
      "libraries": ["-ldl"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
