"""`AsyncClient`: the asyncio client of rnnserve's /v1 API, the same as `rnnserve.client.sync.Client` with
`await` (httpx.AsyncClient for HTTP, websockets' asyncio client for the stream).

    async with AsyncClient("http://127.0.0.1:8000") as client:
        async with await client.create_session("forecaster") as session:
            y = (await session.step(x)).output
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from types import TracebackType
from typing import Any

import httpx

from rnnserve.client import errors, wire
from rnnserve.client.wire import ArrayLike, Call, Inputs, ModelInfo, Result, Retry, SessionInfo


class AsyncClient:
    """A connection pool to one server. `api_key` is sent as `Authorization: Bearer <key>`; `binary=False` sends
    and asks for JSON instead of raw tensor bytes; `retry` says how requests without an answer (or with a 503) are
    retried; `timeout` is per request, in seconds. Close it (or use `with`) to release its connections."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        binary: bool = True,
        timeout: float = 30.0,
        retry: Retry | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.binary = binary
        self.retry = retry if retry is not None else Retry()
        self.timeout = timeout
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._auth, timeout=timeout)
        self._models: dict[str, ModelInfo] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- requests, with retries ----------------------------------------------------------------------------------

    async def request(self, call: Call) -> httpx.Response:
        """Send `call`, retried as `self.retry` says; returns the success response. Error answers raise their
        `ApiError`; no answer at all raises `ConnectionFailed`."""
        attempts = wire.Attempts(self.retry, call)
        while True:
            try:
                response = await self._http.request(call.method, call.path, content=call.content, headers=call.headers)
            except httpx.TransportError as exc:
                delay = attempts.failed(exc)
            else:
                answered = attempts.answered(response.status_code, response.headers, response.content)
                if answered is None:
                    return response
                delay = answered
            await asyncio.sleep(delay)

    async def _json(self, call: Call) -> Any:
        return (await self.request(call)).json()

    # ---- discovery -----------------------------------------------------------------------------------------------

    async def healthy(self) -> bool:
        """`GET /healthz` answers 200: the process runs."""
        try:
            return (await self._http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    async def ready(self) -> bool:
        """`GET /readyz` answers 200: every model loaded and the session store answers."""
        try:
            return (await self._http.get("/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def models(self) -> list[ModelInfo]:
        infos = [ModelInfo.from_json(m) for m in (await self._json(Call("GET", "/v1/models")))["models"]]
        self._models.update((m.name, m) for m in infos if m.status == "ready")
        return infos

    async def model(self, name: str, *, refresh: bool = False) -> ModelInfo:
        """A model's signature (kept once the model is ready: requests are encoded against it)."""
        info = self._models.get(name)
        if refresh or info is None:
            info = ModelInfo.from_json(await self._json(Call("GET", f"/v1/models/{name}")))
            if info.status == "ready":  # a loading model has no signature yet
                self._models[name] = info
        return info

    # ---- stateless -----------------------------------------------------------------------------------------------

    async def predict(
        self,
        model: str,
        inputs: Inputs,
        *,
        mask: ArrayLike | None = None,
        initial_state: Sequence[ArrayLike] | None = None,
        return_state: bool = False,
        time_major: bool | None = None,
    ) -> Result:
        """`POST /v1/models/{model}/predict` on whole sequences: `inputs` `[B, T, F]` (or by input name)."""
        info = await self.model(model)
        body, headers = wire.tensor_request(
            info, inputs, binary=self.binary, mask=mask, initial_state=initial_state,
            return_state=return_state, time_major=time_major,
        )  # fmt: skip
        response = await self.request(Call("POST", f"/v1/models/{model}/predict", body, headers))
        return wire.http_result(info, response.headers, response.content)

    # ---- sessions ------------------------------------------------------------------------------------------------

    async def create_session(
        self,
        model: str,
        *,
        batch_size: int | None = None,
        initial_state: Sequence[ArrayLike] | None = None,
        ttl_s: float | None = None,
    ) -> AsyncSession:
        """`POST /v1/sessions`: a new session (`with` deletes it at the end of the block)."""
        info = await self.model(model)
        obj: dict[str, Any] = {"model": model, **wire.states_body("initial_state", initial_state)}
        if batch_size is not None:
            obj["batch_size"] = batch_size
        if ttl_s is not None:
            obj["ttl_s"] = ttl_s
        call = Call("POST", "/v1/sessions", wire.dumps(obj), {"Content-Type": wire.JSON}, resend="connect")
        return AsyncSession(self, info, SessionInfo.from_json(await self._json(call)))

    async def session(self, session_id: str) -> AsyncSession:
        """An existing session (e.g. one another process created), at the step the server holds."""
        held = SessionInfo.from_json(await self._json(Call("GET", f"/v1/sessions/{session_id}")))
        return AsyncSession(self, await self.model(held.model), held)


class AsyncSession:
    """One server-side session. `seq` is the step this client knows the session to be at: every step sends it,
    so that a step retried after a lost reply is answered from the server's cache instead of applied twice, and a
    session stepped by someone else fails with `SeqConflict` instead of silently mixing streams. One caller at a
    time: steps of one session apply in order, so concurrent steps of one `AsyncSession` would conflict.
    `async with` deletes the session when the block ends (unless `delete()` already did)."""

    def __init__(self, client: AsyncClient, model: ModelInfo, info: SessionInfo) -> None:
        self.client = client
        self.model = model
        self.id = info.session_id
        self.batch_size = info.batch_size
        self.expires_at = info.expires_at
        self.seq = info.step
        self.deleted = False

    def __repr__(self) -> str:
        return f"Session({self.id!r}, model={self.model.name!r}, seq={self.seq})"

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.deleted:
            return
        try:
            await self.delete()
        except errors.ClientError:
            if exc is None:
                raise

    @property
    def path(self) -> str:
        return f"/v1/sessions/{self.id}"

    async def step(
        self,
        inputs: Inputs,
        *,
        mask: ArrayLike | None = None,
        return_state: bool = False,
        time_major: bool | None = None,
    ) -> Result:
        """`POST /v1/sessions/{id}/step` with `seq`: one chunk `[B, T, F]`; the session advances by T, once."""
        body, headers = wire.tensor_request(
            self.model, inputs, binary=self.client.binary, mask=mask, seq=self.seq,
            return_state=return_state, time_major=time_major,
        )  # fmt: skip
        response = await self.client.request(Call("POST", f"{self.path}/step", body, headers))
        result = wire.http_result(self.model, response.headers, response.content)
        if result.step is not None:
            self.seq = result.step
        return result

    async def reset(self, states: Sequence[ArrayLike] | None = None, *, layers: Sequence[str] | None = None) -> None:
        """`POST /v1/sessions/{id}/reset`: Keras `reset_states()` (zeros, or `states`); the step goes back to 0.
        `layers`: reset only these Keras layers' states (`layer.reset_states()`), `states` then holding theirs."""
        body = wire.dumps(wire.states_body("states", states) | ({} if layers is None else {"layers": list(layers)}))
        await self.client.request(Call("POST", f"{self.path}/reset", body, {"Content-Type": wire.JSON}))
        self.seq = 0

    async def info(self) -> SessionInfo:
        """`GET /v1/sessions/{id}`: step, expiry and the states the server holds."""
        info = SessionInfo.from_json(await self.client._json(Call("GET", self.path)))
        self.expires_at = info.expires_at
        return info

    async def refresh(self) -> SessionInfo:
        """`info()`, and take the server's step as `seq` (after a `SeqConflict`, to go on from where it is)."""
        info = await self.info()
        self.seq = info.step
        return info

    async def delete(self) -> None:
        """`DELETE /v1/sessions/{id}` (a resend that finds it gone, after a lost reply, counts as done)."""
        await self.client.request(Call("DELETE", self.path, done_if_resent=frozenset({404})))
        self.deleted = True

    def open_stream(
        self, *, return_state: bool = False, time_major: bool | None = None, binary: bool | None = None
    ) -> AsyncStream:
        """A WebSocket stream on this session (connected at its first message): `send`, `recv`, `step`."""
        binary = self.client.binary if binary is None else binary
        codec = wire.StreamCodec(self.model, binary=binary, return_state=return_state, time_major=time_major)
        return AsyncStream(self, codec)

    async def stream(
        self,
        chunks: Iterable[Inputs] | AsyncIterable[Inputs],
        *,
        window: int = 16,
        return_state: bool = False,
        time_major: bool | None = None,
        binary: bool | None = None,
    ) -> AsyncIterator[Result]:
        """Each chunk's result, in order, over one WebSocket stream; up to `window` chunks are in flight. Leaving the
        loop early leaves the connection to the generator's finaliser: wrap it in `contextlib.aclosing` to close
        it at once."""
        async with self.open_stream(return_state=return_state, time_major=time_major, binary=binary) as stream:
            async for result in stream.map(chunks, window=window):
                yield result


class AsyncStream:
    """`WS /v1/sessions/{id}/stream`: every message is one step, answered in order. Binary frames when the model
    and the chunks allow it (`wire.StreamCodec`), JSON text messages otherwise. A bad message raises its
    `ApiError` at its `recv` and leaves the session as it was; the stream goes on."""

    def __init__(self, session: AsyncSession, codec: wire.StreamCodec) -> None:
        self.session = session
        self.codec = codec
        self._ws: Any = None
        self._exits = contextlib.AsyncExitStack()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._ws = None
        await self._exits.aclose()

    @property
    def pending(self) -> int:
        """Messages sent and not yet answered."""
        return len(self.codec.pending)

    async def _connect(self, first: Inputs, mask: ArrayLike | None) -> Any:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        url = wire.ws_url(self.session.client.url, self.session.id) + self.codec.query(first, mask)
        try:
            connection = connect(url, additional_headers=self.session.client._auth, max_size=None,
                                 open_timeout=self.session.client.timeout)  # fmt: skip
            # entered, as websockets >= 17 wants a connection used
            return await self._exits.enter_async_context(connection)
        except InvalidStatus as exc:  # the server refuses the upgrade only for a missing or wrong API key
            raise wire.closed_error(1008, f"the server refused the stream ({exc})") from exc
        except OSError as exc:
            raise errors.ConnectionFailed(f"cannot open the stream: {exc!r}") from exc

    async def send(self, inputs: Inputs, *, mask: ArrayLike | None = None) -> None:
        """Send one chunk; its reply comes from `recv`, in order."""
        from websockets.exceptions import ConnectionClosed

        if self._ws is None:
            self._ws = await self._connect(inputs, mask)
        message = self.codec.encode(inputs, mask)
        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            raise wire.closed_error(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "") from exc

    async def recv(self, timeout: float | None = None) -> Result:
        """The next reply; the session's `seq` follows its step."""
        from websockets.exceptions import ConnectionClosed

        if self._ws is None or not self.codec.pending:
            raise errors.ClientError("recv() without a message awaiting its reply")
        try:
            wait = timeout if timeout is not None else self.session.client.timeout
            message = await asyncio.wait_for(self._ws.recv(), wait)
        except ConnectionClosed as exc:
            raise wire.closed_error(exc.rcvd.code if exc.rcvd else None, exc.rcvd.reason if exc.rcvd else "") from exc
        result = self.codec.decode(message)
        if result.step is not None:
            self.session.seq = result.step
        return result

    async def step(self, inputs: Inputs, *, mask: ArrayLike | None = None) -> Result:
        await self.send(inputs, mask=mask)
        return await self.recv()

    async def map(self, chunks: Iterable[Inputs] | AsyncIterable[Inputs], *, window: int = 16) -> AsyncIterator[Result]:
        """Each chunk's result in order, keeping up to `window` chunks in flight."""
        async for chunk in _aiter(chunks):
            while self.pending >= max(1, window):
                yield await self.recv()
            await self.send(chunk)
        while self.pending:
            yield await self.recv()


async def _aiter(chunks: Iterable[Inputs] | AsyncIterable[Inputs]) -> AsyncIterator[Inputs]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield chunk
    else:
        for chunk in chunks:
            yield chunk
