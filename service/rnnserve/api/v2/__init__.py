"""The /v2 API: the Open Inference Protocol (KServe v2 / Triton HTTP) with binary tensors and sequences.

Modules: `tensors` (the wire format), `binding` (a model's signature as v2 metadata; requests bound to it),
`infer` (stateless or sequence requests through the data plane), `routes` (HTTP only).
"""

from __future__ import annotations

from fastapi import APIRouter

from rnnserve.api.v2 import routes

routers: tuple[APIRouter, ...] = (routes.router, routes.health_router)
