"""The API scenario, run with the Python client that openapi-python-client generates from
openapi.json (the package `stella_integrations_client`, generated into target/ by
scripts/generated-clients and put on PYTHONPATH).

Against a running daemon (STELLA_URL, STELLA_KEY: an API key with `integrations:write` in a
tenant of its own): create several integrations, list them page by page with the cursor,
update with If-Match (a stale ETag answers 412), run a health check and read health, its
history and the audit trail, follow the server-sent event stream until the check's event
arrives, delete (then 404). Every answer is read through the generated attrs models; an answer
the models cannot parse, or one of the wrong type, fails the scenario.

Prints `N passed, M failed` for the steps and exits non-zero on the first failure.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import httpx
from stella_integrations_client import AuthenticatedClient
from stella_integrations_client.api.audit import audit_list
from stella_integrations_client.api.integrations import (
    integration_create,
    integration_delete,
    integration_get,
    integration_health_check,
    integration_health_get,
    integration_list,
    integration_update,
)
from stella_integrations_client.api.system import system_ready
from stella_integrations_client.models import (
    AuditPage,
    CloudEvent,
    HealthCheckResult,
    HealthHistoryEntry,
    InmemoryIntegrationCreate,
    InmemoryIntegrationUpdate,
    Integration,
    IntegrationHealth,
    IntegrationPage,
    IntegrationStatus,
    Problem,
)
from stella_integrations_client.types import UNSET, Unset

PREFIX = "py-scenario"
COUNT = 7  # integrations created; listed 3 at a time, so three pages
PAGE = 3
HEALTH_CHANGED = "dev.stellaops.integration.health.changed"
STREAM_SECONDS = 30.0  # how long to wait for the check's event on the stream
HISTORY_SECONDS = 10.0  # how long to wait for the check to reach the stored history

T = TypeVar("T")


class ScenarioError(AssertionError):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise ScenarioError(what)


def expect(value: object, kind: type[T], what: str) -> T:
    """The parsed answer as `kind`, or a failure naming what was received instead."""
    if not isinstance(value, kind):
        detail = value.to_dict() if isinstance(value, Problem) else value
        raise ScenarioError(f"{what}: expected {kind.__name__}, got {type(value).__name__}: {detail}")
    return value


def create_body(name: str, config: dict[str, Any] | None = None) -> InmemoryIntegrationCreate:
    """An `inmemory` integration's registration, read from JSON by the generated model as a
    program holding its configuration as JSON does (the document has one registration per
    provider type, chosen by `type`, each typing `config` as that provider's model)."""
    body: dict[str, Any] = {"type": "inmemory", "name": name}
    if config is not None:
        body["config"] = config
    return InmemoryIntegrationCreate.from_dict(body)


def update_body(name: str, config: dict[str, Any] | None = None) -> InmemoryIntegrationUpdate:
    """A replacement body, read from JSON by the generated model like `create_body`."""
    body: dict[str, Any] = {"type": "inmemory", "name": name}
    if config is not None:
        body["config"] = config
    return InmemoryIntegrationUpdate.from_dict(body)


def etag_of(version: int) -> str:
    return f'"{version}"'


def sse_messages(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """(id, data) of each server-sent event; comments and other fields are skipped."""
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield event_id, "\n".join(data)
            event_id, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data.append(value)
            elif field == "id":
                event_id = value


class Scenario:
    def __init__(self, base_url: str, key: str) -> None:
        # raise_on_unexpected_status: a status the document does not declare is a failure.
        self.client = AuthenticatedClient(
            base_url=base_url,
            token=key,
            raise_on_unexpected_status=True,
            timeout=httpx.Timeout(30.0),
        )
        self.ids: list[UUID] = []

    # === steps ===

    def ready(self) -> None:
        answer = system_ready.sync_detailed(client=self.client)
        check(answer.status_code == 200, f"readyz answered {answer.status_code}")

    def create(self) -> None:
        for i in range(COUNT):
            body = create_body(f"{PREFIX}-{i}", {"behaviour": "healthy"})
            answer = integration_create.sync_detailed(client=self.client, body=body)
            check(answer.status_code == 201, f"create answered {answer.status_code}: {answer.content!r}")
            created = expect(answer.parsed, Integration, "create")
            check(created.name == f"{PREFIX}-{i}", f"created name {created.name}")
            check(created.type_ == "inmemory", f"created type {created.type_}")
            check(isinstance(created.status, IntegrationStatus), "status is the IntegrationStatus enum")
            check(isinstance(created.created_at, datetime), "createdAt parses as a datetime")
            check(answer.headers.get("etag") == etag_of(created.version), "ETag is the version")
            location = answer.headers.get("location", "")
            check(location.endswith(f"/api/v1/integrations/{created.id}"), f"Location {location!r}")
            self.ids.append(created.id)
        # The same name again is a conflict, answered as a typed problem.
        again = integration_create.sync_detailed(client=self.client, body=create_body(f"{PREFIX}-0"))
        problem = expect(again.parsed, Problem, "duplicate name")
        check(again.status_code == 409 and problem.code == "conflict", f"duplicate name: {problem.to_dict()}")

    def paginate(self) -> None:
        seen: list[UUID] = []
        pages = 0
        cursor: str | Unset = UNSET
        while True:
            pages += 1
            check(pages <= COUNT + 1, "the cursor never ends")
            answer = integration_list.sync_detailed(client=self.client, limit=PAGE, cursor=cursor)
            check(answer.status_code == 200, f"list answered {answer.status_code}")
            page = expect(answer.parsed, IntegrationPage, "list")
            check(len(page.items) <= PAGE, f"a page of {len(page.items)} items with limit {PAGE}")
            for item in page.items:
                expect(item, Integration, "list item")
                seen.append(item.id)
            if isinstance(page.next_cursor, Unset) or page.next_cursor is None:
                break
            cursor = page.next_cursor
        check(len(seen) == len(set(seen)), f"an integration listed twice: {seen}")
        check(set(seen) == set(self.ids), f"listed {sorted(map(str, seen))}, created {sorted(map(str, self.ids))}")
        check(pages == -(-COUNT // PAGE), f"{pages} pages for {COUNT} integrations at {PAGE} a page")

    def update_with_if_match(self) -> None:
        target = self.ids[0]
        read = integration_get.sync_detailed(target, client=self.client)
        current = expect(read.parsed, Integration, "get")
        etag = read.headers.get("etag")
        check(etag == etag_of(current.version), f"GET ETag {etag!r} for version {current.version}")
        assert etag is not None

        body = update_body(f"{PREFIX}-renamed", {"behaviour": "healthy"})
        answer = integration_update.sync_detailed(target, client=self.client, body=body, if_match=etag)
        check(answer.status_code == 200, f"update answered {answer.status_code}: {answer.content!r}")
        updated = expect(answer.parsed, Integration, "update")
        check(updated.name == f"{PREFIX}-renamed", f"updated name {updated.name}")
        check(updated.version > current.version, "the version increases")
        check(answer.headers.get("etag") == etag_of(updated.version), "the update's ETag is its version")

        stale = integration_update.sync_detailed(
            target, client=self.client, body=update_body(f"{PREFIX}-lost"), if_match=etag
        )
        problem = expect(stale.parsed, Problem, "stale update")
        check(stale.status_code == 412, f"a stale If-Match answered {stale.status_code}")
        check(problem.code == "precondition_failed", f"stale If-Match problem code {problem.code}")
        check(problem.status == 412, f"problem status {problem.status}")

        after = expect(integration_get.sync(target, client=self.client), Integration, "get after 412")
        check(after.name == f"{PREFIX}-renamed", "the refused update changed nothing")

    def health(self) -> None:
        target = self.ids[0]
        answer = integration_health_check.sync_detailed(target, client=self.client)
        check(answer.status_code == 200, f"health-check answered {answer.status_code}: {answer.content!r}")
        result = expect(answer.parsed, HealthCheckResult, "health-check")
        check(result.status == IntegrationStatus.HEALTHY, f"the check says {result.status}")
        check(isinstance(result.checked_at, datetime), "checkedAt parses as a datetime")
        check(result.latency_ms >= 0, "latency is not negative")
        self.checked_at = result.checked_at

        # The result reaches the stored history through the health engine's writer.
        deadline = time.monotonic() + HISTORY_SECONDS
        while True:
            health = expect(
                integration_health_get.sync(target, client=self.client, limit=50), IntegrationHealth, "health"
            )
            history = [expect(h, HealthHistoryEntry, "history entry") for h in health.history]
            if any(h.checked_at >= result.checked_at - timedelta(milliseconds=1) for h in history):
                break
            check(time.monotonic() < deadline, f"the check of {result.checked_at} is not in the history")
            time.sleep(0.2)
        check(health.status == IntegrationStatus.HEALTHY, f"health status {health.status}")
        last = health.last_check
        if isinstance(last, Unset) or last is None:
            raise ScenarioError("lastCheck is not set after a check")
        check(last.status == IntegrationStatus.HEALTHY, f"lastCheck status {last.status}")
        check(isinstance(last.checked_at, datetime), "lastCheck.checkedAt parses as a datetime")
        check(health.consecutive_successes >= 1, f"{health.consecutive_successes} consecutive successes")
        check(all(h.status == "healthy" for h in history), f"history {[h.status for h in history]}")
        uptime = health.uptime.last24h
        check(isinstance(uptime, float) and uptime == 1.0, f"uptime over 24 h {uptime}")

    def audit(self) -> None:
        target = self.ids[0]
        page = expect(audit_list.sync(client=self.client, integration_id=str(target)), AuditPage, "audit")
        actions = [entry.action for entry in page.items]
        check("integration.create" in actions, f"audit actions {actions}")
        check("integration.update" in actions, f"audit actions {actions}")
        check(all(entry.integration_id == target for entry in page.items), "audit filtered by integration")

    def events(self) -> None:
        """The stream, read with the generated client's own httpx client: replayed from the
        start of the tenant's log, filtered to the integration checked above."""
        target = self.ids[0]
        params: dict[str, Any] = {
            "type": "dev.stellaops.integration.health.*",
            "integrationId": str(target),
            "after": 0,
        }
        http = self.client.get_httpx_client()
        deadline = time.monotonic() + STREAM_SECONDS
        timeout = httpx.Timeout(STREAM_SECONDS, read=STREAM_SECONDS)
        with http.stream(
            "GET", "/api/v1/events", params=params, headers={"Accept": "text/event-stream"}, timeout=timeout
        ) as response:
            check(response.status_code == 200, f"events answered {response.status_code}")
            content_type = response.headers.get("content-type", "")
            check(content_type.startswith("text/event-stream"), f"events content type {content_type}")
            for event_id, data in sse_messages(response.iter_lines()):
                check(time.monotonic() < deadline, "no health event of the integration in time")
                event = CloudEvent.from_dict(json.loads(data))
                check(event_id is not None and int(event_id) > 0, f"event id {event_id!r}")
                check(event.specversion == "1.0", f"specversion {event.specversion}")
                check(event.subject == str(target), f"an event of {event.subject} on a filtered stream")
                check(event.type_.startswith("dev.stellaops.integration.health."), f"type {event.type_}")
                payload = event.data
                check(isinstance(payload, dict), f"event data {payload!r}")
                if event.type_ == HEALTH_CHANGED and payload.get("status") == "healthy":
                    check(payload.get("integrationId") == str(target), f"data {payload}")
                    check(payload.get("previousStatus") == "unknown", f"data {payload}")
                    return
        raise ScenarioError("the event stream ended before the check's event")

    def delete(self) -> None:
        target = self.ids[0]
        read = integration_get.sync_detailed(target, client=self.client)
        etag = read.headers.get("etag")
        check(etag is not None, "GET has an ETag")
        assert etag is not None
        answer = integration_delete.sync_detailed(target, client=self.client, if_match=etag)
        check(answer.status_code == 204, f"delete answered {answer.status_code}: {answer.content!r}")
        gone = integration_get.sync_detailed(target, client=self.client)
        problem = expect(gone.parsed, Problem, "get after delete")
        check(gone.status_code == 404 and problem.code == "not_found", f"after delete: {problem.to_dict()}")
        page = expect(integration_list.sync(client=self.client, limit=200), IntegrationPage, "list after delete")
        check(target not in {i.id for i in page.items}, "a deleted integration is still listed")
        check(len(page.items) == COUNT - 1, f"{len(page.items)} integrations left of {COUNT}")


def main() -> int:
    base_url = os.environ.get("STELLA_URL", "http://127.0.0.1:8080")
    key = os.environ["STELLA_KEY"]
    scenario = Scenario(base_url, key)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("ready", scenario.ready),
        ("create", scenario.create),
        ("list with pagination", scenario.paginate),
        ("update with If-Match", scenario.update_with_if_match),
        ("health check, health and history", scenario.health),
        ("audit trail", scenario.audit),
        ("event stream", scenario.events),
        ("delete", scenario.delete),
    ]
    passed = 0
    started = datetime.now(UTC)
    for name, step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - report the step and stop
            print(f"python client: {name}: FAILED: {type(error).__name__}: {error}")
            print(f"{passed} passed, 1 failed, {len(steps) - passed - 1} skipped")
            return 1
        passed += 1
        print(f"python client: {name}: ok")
    elapsed = (datetime.now(UTC) - started).total_seconds()
    print(f"python client: scenario done in {elapsed:.1f} s")
    print(f"{passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
