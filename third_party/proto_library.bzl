"""C++ code generation for .proto files with Debian's protoc and grpc_cpp_plugin.

Usage (in proto/BUILD):
  lethe_cc_proto_library(
      name = "job_cc_proto",
      srcs = ["lethe/v1/job.proto"],
      grpc = False,
  )
Import paths are relative to the package that holds the .proto files, so
`lethe/v1/job.proto` generates `lethe/v1/job.pb.h`, included as such.
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def _strip_ext(path):
    return path[:-len(".proto")]

def lethe_cc_proto_library(name, srcs, deps = [], grpc = False, visibility = None):
    """Generates messages (and gRPC stubs when grpc=True) and wraps them in a cc_library."""
    stems = [_strip_ext(src) for src in srcs]
    hdrs = [stem + ".pb.h" for stem in stems]
    cc_srcs = [stem + ".pb.cc" for stem in stems]
    if grpc:
        hdrs += [stem + ".grpc.pb.h" for stem in stems]
        cc_srcs += [stem + ".grpc.pb.cc" for stem in stems]

    package = native.package_name()
    out_dir = "$(GENDIR)/" + package if package else "$(GENDIR)"
    proto_path = package if package else "."
    cmd = "protoc --proto_path=%s --cpp_out=%s" % (proto_path, out_dir)
    if grpc:
        cmd += " --grpc_out=%s --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin)" % out_dir
    cmd += " $(SRCS)"

    native.genrule(
        name = name + "_codegen",
        # Every .proto of the package is visible, so imports between them resolve.
        srcs = native.glob(["**/*.proto"]),
        outs = hdrs + cc_srcs,
        cmd = cmd.replace("$(SRCS)", " ".join(["%s/%s" % (proto_path, s) for s in srcs])),
    )
    cc_library(
        name = name,
        srcs = cc_srcs,
        hdrs = hdrs,
        includes = ["."],
        deps = deps + ["//third_party:protobuf"] + (["//third_party:grpc"] if grpc else []),
        visibility = visibility,
    )
