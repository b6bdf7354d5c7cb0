"""The Open Inference Protocol over gRPC: KServe v2's `GRPCInferenceService` and Triton's `ModelStreamInfer`, served
by grpcio's asyncio server in the app's event loop, on the same data plane as HTTP (docs/API.md, "Open Inference
Protocol over gRPC").

Modules: `server` (the grpc.aio server: port, options, start and stop), `servicer` (the service's methods),
`infer` (one request through the data plane, bound as /v2 HTTP binds it), `stream` (ModelStreamInfer: ordering
per sequence, concurrency, error responses), `tensors` (protobuf tensors <-> numpy), `status` (problem types ->
gRPC status codes), `auth` (the API key in call metadata), `protos/` (the .proto and its generated stubs).
"""
