"""Offline stand-in for @rules_cc//cc:defs.bzl on Bazel 4.2.3.

Debian's bazel-rules-cc targets newer Bazel releases; the rules themselves
are built into Bazel 4.2.3, so this file only re-exports them.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_shared_library = getattr(native, "cc_shared_library", None)
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_import = native.objc_import
objc_library = native.objc_library
