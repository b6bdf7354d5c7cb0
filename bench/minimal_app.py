"""The ceiling of a FastAPI service on this machine: parse the same JSON body with orjson, answer a constant.

uvicorn bench.minimal_app:app --port 8100 --loop uvloop --http httptools --log-level warning
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request, Response

app = FastAPI()
_ANSWER = orjson.dumps({"outputs": [[0.0]], "step": 1})


@app.post("/echo")
async def echo(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(_ANSWER, media_type="application/json")
