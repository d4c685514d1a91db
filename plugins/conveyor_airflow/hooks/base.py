"""What Conveyor's hooks share: a Connection looked up once, its extras as a dict."""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from airflow.sdk import BaseHook


class ConveyorHook(BaseHook):
    """A hook over one Connection of ``conn_type``; subclasses turn it into client settings."""

    conn_name_attr: ClassVar[str] = "conn_id"
    default_conn_name: ClassVar[str] = ""
    conn_type: ClassVar[str] = ""
    hook_name: ClassVar[str] = ""

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name

    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.conn_id)

    @property
    def extras(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson or {})

    def get_conn(self) -> Any:
        return self.connection

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's "Test" button: subclasses try the real service."""
        try:
            return True, self.check()
        except Exception as exc:  # the UI shows the message; never a traceback
            return False, f"{type(exc).__name__}: {exc}"

    def check(self) -> str:
        raise NotImplementedError
