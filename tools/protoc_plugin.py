"""A protoc plugin that runs one of grpcio-tools' built-in generators.

buf calls plugins over stdin/stdout (CodeGeneratorRequest in, CodeGeneratorResponse
out). protoc's Python generators (python, pyi) and gRPC's (grpc_python) are compiled
into grpcio-tools instead of shipping as plugins, so this adapter hands the request's
descriptors to ``grpc_tools.protoc`` and returns what it writes. Usage in buf.gen.yaml:
``local: [.venv/bin/python, tools/protoc_plugin.py, grpc_python]``.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from grpc_tools import protoc

GENERATORS = ("python", "pyi", "grpc_python")


def main() -> int:
    generator = sys.argv[1] if len(sys.argv) > 1 else ""
    if generator not in GENERATORS:
        print(f"usage: protoc_plugin.py {{{'|'.join(GENERATORS)}}}", file=sys.stderr)
        return 2
    request = plugin_pb2.CodeGeneratorRequest.FromString(sys.stdin.buffer.read())
    response = plugin_pb2.CodeGeneratorResponse(
        supported_features=plugin_pb2.CodeGeneratorResponse.FEATURE_PROTO3_OPTIONAL
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        descriptors = root / "in.binpb"
        descriptors.write_bytes(descriptor_pb2.FileDescriptorSet(file=request.proto_file).SerializeToString())
        out = root / "out"
        out.mkdir()
        args = ["protoc", f"--descriptor_set_in={descriptors}", f"--{generator}_out={out}"]
        if request.parameter:
            args[-1] = f"--{generator}_out={request.parameter}:{out}"
        code = protoc.main([*args, *request.file_to_generate])
        if code != 0:
            response.error = f"grpc_tools.protoc --{generator}_out failed with exit code {code}"
        else:
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                response.file.add(name=str(path.relative_to(out)), content=path.read_text())
    sys.stdout.buffer.write(response.SerializeToString())
    return 0


if __name__ == "__main__":
    sys.exit(main())
