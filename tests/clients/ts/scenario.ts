// The API scenario, run with a TypeScript client made from openapi.json: `openapi-typescript`
// generates the types (into target/clients/ts/schema.d.ts, by scripts/generated-clients) and
// `openapi-fetch` is the client typed by them. `tsc --strict` over this file must pass, so a
// change of the document that makes the types unusable fails before anything runs.
//
// Against a running daemon (STELLA_URL, STELLA_KEY: an API key with `integrations:write` in a
// tenant of its own): create several integrations, list them page by page with the cursor,
// update with If-Match (a stale ETag answers 412), run a health check and read health, its
// history and the audit trail, follow the server-sent event stream until the check's event
// arrives, delete (then 404).
//
// Prints `N passed, M failed` for the steps and exits non-zero on the first failure.

import createClient from "openapi-fetch";
import type { components, paths } from "../../../target/clients/ts/schema.js";

type Integration = components["schemas"]["Integration"];
type IntegrationStatus = components["schemas"]["IntegrationStatus"];
type CloudEvent = components["schemas"]["CloudEvent"];
type Problem = components["schemas"]["Problem"];

const PREFIX = "ts-scenario";
const COUNT = 7; // integrations created; listed 3 at a time, so three pages
const PAGE = 3;
const HEALTH_CHANGED = "dev.stellaops.integration.health.changed";
const STREAM_MS = 30_000; // how long to wait for the check's event on the stream
const HISTORY_MS = 10_000; // how long to wait for the check to reach the stored history

const baseUrl = process.env.STELLA_URL ?? "http://127.0.0.1:8080";
const key = process.env.STELLA_KEY;
if (!key) {
  throw new Error("STELLA_KEY is not set");
}

const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${key}` } });

class ScenarioError extends Error {}

function check(condition: boolean, what: string): asserts condition {
  if (!condition) {
    throw new ScenarioError(what);
  }
}

function etagOf(version: number): string {
  return `"${version}"`;
}

// Checks at run time what the types promise, for the fields the scenario relies on.
function checkIntegration(value: Integration, what: string): Integration {
  check(typeof value.id === "string" && value.id.length === 36, `${what}: id ${value.id}`);
  check(typeof value.version === "number", `${what}: version ${value.version}`);
  check(!Number.isNaN(Date.parse(value.createdAt)), `${what}: createdAt ${value.createdAt}`);
  const statuses: IntegrationStatus[] = ["unknown", "healthy", "degraded", "unhealthy", "paused", "error"];
  check(statuses.includes(value.status), `${what}: status ${value.status}`);
  return value;
}

function problemOf(error: Problem | undefined, what: string): Problem {
  check(error !== undefined, `${what}: no problem document`);
  check(typeof error.code === "string" && typeof error.status === "number", `${what}: ${JSON.stringify(error)}`);
  return error;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const ids: string[] = [];

// The integration the scenario updates, checks, streams and deletes.
function firstId(): string {
  const id = ids[0];
  check(id !== undefined, "no integration was created");
  return id;
}

async function ready(): Promise<void> {
  const { response } = await client.GET("/readyz");
  check(response.status === 200, `readyz answered ${response.status}`);
}

async function create(): Promise<void> {
  for (let i = 0; i < COUNT; i++) {
    const { data, error, response } = await client.POST("/api/v1/integrations", {
      body: { type: "inmemory", name: `${PREFIX}-${i}`, config: { behaviour: "healthy" } },
    });
    check(response.status === 201 && data !== undefined, `create answered ${response.status}: ${JSON.stringify(error)}`);
    const created = checkIntegration(data, "create");
    check(created.name === `${PREFIX}-${i}`, `created name ${created.name}`);
    check(created.type === "inmemory", `created type ${created.type}`);
    check(response.headers.get("etag") === etagOf(created.version), "ETag is the version");
    const location = response.headers.get("location") ?? "";
    check(location.endsWith(`/api/v1/integrations/${created.id}`), `Location ${location}`);
    ids.push(created.id);
  }
  const again = await client.POST("/api/v1/integrations", { body: { type: "inmemory", name: `${PREFIX}-0` } });
  const problem = problemOf(again.error, "duplicate name");
  check(again.response.status === 409 && problem.code === "conflict", `duplicate name: ${JSON.stringify(problem)}`);
}

async function paginate(): Promise<void> {
  const seen: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    pages++;
    check(pages <= COUNT + 1, "the cursor never ends");
    const { data, response } = await client.GET("/api/v1/integrations", {
      params: { query: { limit: PAGE, cursor } },
    });
    check(response.status === 200 && data !== undefined, `list answered ${response.status}`);
    check(data.items.length <= PAGE, `a page of ${data.items.length} items with limit ${PAGE}`);
    for (const item of data.items) {
      seen.push(checkIntegration(item, "list item").id);
    }
    // `nextCursor` is optional and nullable: the last page has none.
    const next: string | null | undefined = data.nextCursor;
    if (next === undefined || next === null) {
      break;
    }
    cursor = next;
  }
  check(new Set(seen).size === seen.length, `an integration listed twice: ${seen}`);
  check(
    seen.length === ids.length && ids.every((id) => seen.includes(id)),
    `listed ${[...seen].sort()}, created ${[...ids].sort()}`,
  );
  check(pages === Math.ceil(COUNT / PAGE), `${pages} pages for ${COUNT} integrations at ${PAGE} a page`);
}

async function updateWithIfMatch(): Promise<void> {
  const id = firstId();
  const read = await client.GET("/api/v1/integrations/{id}", { params: { path: { id } } });
  check(read.data !== undefined, `get answered ${read.response.status}`);
  const current = checkIntegration(read.data, "get");
  const etag = read.response.headers.get("etag");
  check(etag === etagOf(current.version), `GET ETag ${etag} for version ${current.version}`);

  const updated = await client.PUT("/api/v1/integrations/{id}", {
    params: { path: { id }, header: { "If-Match": etag } },
    body: { type: "inmemory", name: `${PREFIX}-renamed`, config: { behaviour: "healthy" } },
  });
  check(updated.data !== undefined, `update answered ${updated.response.status}: ${JSON.stringify(updated.error)}`);
  const after = checkIntegration(updated.data, "update");
  check(after.name === `${PREFIX}-renamed`, `updated name ${after.name}`);
  check(after.version > current.version, "the version increases");
  check(updated.response.headers.get("etag") === etagOf(after.version), "the update's ETag is its version");

  const stale = await client.PUT("/api/v1/integrations/{id}", {
    params: { path: { id }, header: { "If-Match": etag } },
    body: { type: "inmemory", name: `${PREFIX}-lost` },
  });
  const problem = problemOf(stale.error, "stale update");
  check(stale.response.status === 412, `a stale If-Match answered ${stale.response.status}`);
  check(problem.code === "precondition_failed" && problem.status === 412, `stale: ${JSON.stringify(problem)}`);

  const reread = await client.GET("/api/v1/integrations/{id}", { params: { path: { id } } });
  check(reread.data?.name === `${PREFIX}-renamed`, "the refused update changed nothing");
}

let checkedAt = "";

async function health(): Promise<void> {
  const id = firstId();
  const { data: result, response } = await client.POST("/api/v1/integrations/{id}/health-check", {
    params: { path: { id } },
  });
  check(result !== undefined, `health-check answered ${response.status}`);
  const status: IntegrationStatus = result.status;
  check(status === "healthy", `the check says ${status}`);
  check(result.latencyMs >= 0, "latency is not negative");
  checkedAt = result.checkedAt;
  const checked = Date.parse(result.checkedAt);
  check(!Number.isNaN(checked), `checkedAt ${result.checkedAt}`);

  // The result reaches the stored history through the health engine's writer.
  const deadline = Date.now() + HISTORY_MS;
  for (;;) {
    const { data } = await client.GET("/api/v1/integrations/{id}/health", {
      params: { path: { id }, query: { limit: 50 } },
    });
    check(data !== undefined, "health answered no body");
    if (data.history.some((entry) => Date.parse(entry.checkedAt) >= checked - 1)) {
      check(data.status === "healthy", `health status ${data.status}`);
      check(data.lastCheck?.status === "healthy", `lastCheck ${JSON.stringify(data.lastCheck)}`);
      check(data.consecutiveSuccesses >= 1, `${data.consecutiveSuccesses} consecutive successes`);
      check(
        data.history.every((entry) => entry.status === "healthy" && typeof entry.latencyMs === "number"),
        `history ${JSON.stringify(data.history)}`,
      );
      const uptime: number | null | undefined = data.uptime.last24h;
      check(uptime === 1, `uptime over 24 h ${uptime}`);
      return;
    }
    check(Date.now() < deadline, `the check of ${result.checkedAt} is not in the history`);
    await sleep(200);
  }
}

async function audit(): Promise<void> {
  const id = firstId();
  const { data } = await client.GET("/api/v1/audit", { params: { query: { integrationId: id } } });
  check(data !== undefined, "audit answered no body");
  const actions = data.items.map((entry) => entry.action);
  check(actions.includes("integration.create") && actions.includes("integration.update"), `audit ${actions}`);
  check(
    data.items.every((entry) => entry.integrationId === id),
    "audit filtered by integration",
  );
}

// Server-sent events split into (id, data) pairs; comments and other fields are skipped.
async function* sseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<{ id?: string; data: string }> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  let id: string | undefined;
  let data: string[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) {
      return;
    }
    buffer += decoder.decode(value, { stream: true });
    let newline: number;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).replace(/\r$/, "");
      buffer = buffer.slice(newline + 1);
      if (line === "") {
        if (data.length > 0) {
          yield { id, data: data.join("\n") };
        }
        id = undefined;
        data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") {
          data.push(value);
        } else if (field === "id") {
          id = value;
        }
      }
    }
  }
}

// The stream through the generated client (`parseAs: "stream"`), replayed from the start of
// the tenant's log and filtered to the integration checked above.
async function events(): Promise<void> {
  const id = firstId();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), STREAM_MS);
  try {
    const { data: body, response } = await client.GET("/api/v1/events", {
      params: { query: { type: ["dev.stellaops.integration.health.*"], integrationId: id, after: 0 } },
      headers: { Accept: "text/event-stream" },
      parseAs: "stream",
      signal: abort.signal,
    });
    check(response.status === 200 && body !== undefined && body !== null, `events answered ${response.status}`);
    const contentType = response.headers.get("content-type") ?? "";
    check(contentType.startsWith("text/event-stream"), `events content type ${contentType}`);
    for await (const message of sseMessages(body)) {
      const event: CloudEvent = JSON.parse(message.data);
      check(message.id !== undefined && Number(message.id) > 0, `event id ${message.id}`);
      check(event.specversion === "1.0", `specversion ${event.specversion}`);
      check(event.subject === id, `an event of ${event.subject} on a filtered stream`);
      check(event.type.startsWith("dev.stellaops.integration.health."), `type ${event.type}`);
      check(!Number.isNaN(Date.parse(event.time)), `time ${event.time}`);
      const payload = event.data as Record<string, unknown>;
      check(typeof payload === "object" && payload !== null, `data ${JSON.stringify(event.data)}`);
      if (event.type === HEALTH_CHANGED && payload.status === "healthy") {
        check(payload.integrationId === id && payload.previousStatus === "unknown", `data ${JSON.stringify(payload)}`);
        check(Date.parse(String(payload.checkedAt)) <= Date.parse(checkedAt), `checkedAt ${payload.checkedAt}`);
        return;
      }
    }
    throw new ScenarioError("the event stream ended before the check's event");
  } catch (error) {
    if (abort.signal.aborted) {
      throw new ScenarioError(`no health event of the integration within ${STREAM_MS} ms`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

async function remove(): Promise<void> {
  const id = firstId();
  const read = await client.GET("/api/v1/integrations/{id}", { params: { path: { id } } });
  const etag = read.response.headers.get("etag");
  check(etag !== null, "GET has an ETag");
  const { response } = await client.DELETE("/api/v1/integrations/{id}", {
    params: { path: { id }, header: { "If-Match": etag } },
  });
  check(response.status === 204, `delete answered ${response.status}`);
  const gone = await client.GET("/api/v1/integrations/{id}", { params: { path: { id } } });
  const problem = problemOf(gone.error, "get after delete");
  check(gone.response.status === 404 && problem.code === "not_found", `after delete: ${JSON.stringify(problem)}`);
  const { data } = await client.GET("/api/v1/integrations", { params: { query: { limit: 200 } } });
  check(data !== undefined, "list after delete");
  check(!data.items.some((item) => item.id === id), "a deleted integration is still listed");
  check(data.items.length === COUNT - 1, `${data.items.length} integrations left of ${COUNT}`);
}

const steps: [string, () => Promise<void>][] = [
  ["ready", ready],
  ["create", create],
  ["list with pagination", paginate],
  ["update with If-Match", updateWithIfMatch],
  ["health check, health and history", health],
  ["audit trail", audit],
  ["event stream", events],
  ["delete", remove],
];

let passed = 0;
const started = Date.now();
for (const [name, step] of steps) {
  try {
    await step();
  } catch (error) {
    console.log(`typescript client: ${name}: FAILED: ${error instanceof Error ? error.message : String(error)}`);
    console.log(`${passed} passed, 1 failed, ${steps.length - passed - 1} skipped`);
    process.exit(1);
  }
  passed++;
  console.log(`typescript client: ${name}: ok`);
}
console.log(`typescript client: scenario done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
console.log(`${passed} passed, 0 failed`);
