"""GET /health, /ready and /models (service/routes/health.py and the model catalogue)."""

from pathlib import Path

from fastapi.testclient import TestClient

from service.app import create_app
from service.config import Settings


def test_health_ready_and_models(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["models"] == {"wordlm": 1}
    [model] = client.get("/models").json()
    assert model["family"] == "wordlm" and model["version"] == 1
    assert "test_perplexity" in model["metrics"]["model"]
    assert model["graphs"]["step"]["inputs"][0] == {"name": "tokens", "dtype": "int64", "dims": ["batch", "seq"]}


def test_no_models_means_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(models_dir=tmp_path))) as c:
        assert c.get("/ready").status_code == 503
