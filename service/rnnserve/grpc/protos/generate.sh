#!/usr/bin/env sh
# Regenerate the Python modules of grpc_service.proto (commit them with the .proto):
#
#   service/rnnserve/grpc/protos/generate.sh            # with the python on PATH; PYTHON=.venv/bin/python to choose
#
# needs grpcio-tools (pip install -e '.[dev]'). Two edits follow protoc, for the reasons in README.md:
#   1. the messages go into a descriptor pool of their own, not protobuf's default pool, so that rnnserve and
#      another copy of the `inference` package (tritonclient.grpc, KServe, MLServer) can be imported together;
#   2. the service module imports the messages relatively (the package's name is not written into it).
set -eu
PYTHON="${PYTHON:-python}"
case "$PYTHON" in */*) PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")" ;; esac
cd "$(dirname "$0")"
"$PYTHON" -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. grpc_service.proto
# (-i.orig, then removed: the form GNU and BSD sed both take)
sed -i.orig 's/_descriptor_pool\.Default()\.AddSerializedFile(/_descriptor_pool.DescriptorPool().AddSerializedFile(/' \
    grpc_service_pb2.py
sed -i.orig 's/^import grpc_service_pb2 as /from . import grpc_service_pb2 as /' grpc_service_pb2_grpc.py
rm grpc_service_pb2.py.orig grpc_service_pb2_grpc.py.orig
grep -q 'DescriptorPool().AddSerializedFile(' grpc_service_pb2.py
grep -q '^from . import grpc_service_pb2 as ' grpc_service_pb2_grpc.py
