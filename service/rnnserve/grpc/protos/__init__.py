"""Generated from grpc_service.proto by generate.sh (see README.md here); not edited by hand."""
