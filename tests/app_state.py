"""Typed access to what an app built by `create_app` holds, for tests that look behind the HTTP surface."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.runtime import Runtime


def runtime_of(client: TestClient) -> Runtime:
    """The runtime the app's lifespan built (engines, batchers, sessions); the client must have been started."""
    app = client.app
    assert isinstance(app, FastAPI)
    runtime = getattr(app.state, "runtime", None)
    assert isinstance(runtime, Runtime), "start the client first: `with TestClient(app) as client`"
    return runtime
