"""The one requests session factory: our CA bundle and timeout on every request (MSAL and Graph)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def http_session(ca_bundle: Path | None, timeout: float) -> Any:
    """A ``requests.Session`` that always verifies TLS with ``ca_bundle`` (or the system store)
    and applies ``timeout``. requests is imported here, lazily: ``--help`` never loads it."""
    import requests

    class Session(requests.Session):
        """A requests session that always applies our timeout and CA bundle.

        requests lets REQUESTS_CA_BUNDLE override a session's ``verify`` when a request
        passes none (MSAL passes none), so the bundle is re-applied after the merge."""

        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            kwargs.setdefault("timeout", timeout)
            return super().request(method, url, *args, **kwargs)

        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings = super().merge_environment_settings(*args, **kwargs)
            if ca_bundle is not None:
                settings["verify"] = str(ca_bundle)
            return settings

    session = Session()
    if ca_bundle is not None:
        session.verify = str(ca_bundle)
    return session
