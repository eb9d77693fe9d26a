"""Hypothesis profiles for the host tests: the default keeps CI fast; `--hypothesis-profile=long` (make fuzz)
runs the fuzz tests for a long time. Registered here because pytest loads the profile before test modules.
Also the fixtures for a real SensorThings API server (sta_server) and one behind a fault-injecting proxy (sta_proxy)."""
import pytest
from hypothesis import settings

settings.register_profile("long", max_examples=200_000, deadline=None)


@pytest.fixture
def sta_server(tmp_path):
    """A real SensorThings API v1.1 server (fresh SQLite database in tmp_path) on a free loopback port."""
    from stakit import StaServer

    server = StaServer(tmp_path / "sta").start()
    yield server
    server.stop()


@pytest.fixture
def sta_proxy(tmp_path):
    """A fault-injecting proxy in front of a fresh STA server whose links name the proxy; `.server` is the server."""
    from stakit import start_behind_proxy

    proxy = start_behind_proxy(tmp_path / "sta")
    yield proxy
    proxy.stop()
    assert proxy.server is not None
    proxy.server.stop()
