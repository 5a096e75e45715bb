package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.DynamicTest
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.TestFactory
import java.nio.file.Files
import java.nio.file.Path
import java.time.Instant

/**
 * The shared health event cases (`extensions/fixtures/events`): SSE parser + health tracker must reach the
 * expected state at every `expect` step, as the VS Code extension does (test/events-fixtures.test.ts).
 */
class EventFixturesTest {
    private val dir: Path by lazy {
        Path.of(System.getenv("STELLA_FIXTURES_DIR") ?: throw AssertionError("STELLA_FIXTURES_DIR is not set: run through ci.sh")).resolve("events")
    }

    private fun cases(): List<Path> = Files.list(dir).use { s -> s.filter { it.toString().endsWith(".json") && it.fileName.toString() != "reconnect.json" }.sorted().toList() }

    @Test
    fun `the event cases are there`() {
        assertTrue(cases().size >= 10, "expected the shared event cases under $dir")
    }

    private fun view(n: HealthNotification): JsonNode = when (n) {
        is HealthNotification.IntegrationFailing -> Json.obj("kind" to "integration", "integrationId" to n.integrationId, "name" to n.name, "status" to n.status, "reason" to n.reason)
        is HealthNotification.Incident -> Json.obj("kind" to "incident", "incidentId" to n.incidentId, "integrationIds" to n.integrationIds, "title" to n.title, "reason" to n.reason)
    }

    private fun settings(n: JsonNode) = FollowSettings(
        FollowMode.of(n.str("follow")), n.bool("muted") ?: false,
        n.node("pinned")?.map { it.asText() } ?: emptyList(), n.node("referenced")?.map { it.asText() } ?: emptyList(),
    )

    private fun entryField(e: HealthEntry, k: String): JsonNode = Json.toNode(
        when (k) {
            "id" -> e.id
            "name" -> e.name
            "type" -> e.type
            "status" -> e.status
            "statusReason" -> e.statusReason
            "lastCheckedAt" -> e.lastCheckedAt
            "flapping" -> e.flapping
            else -> throw AssertionError("unknown field $k")
        },
    )

    @TestFactory
    fun `each event case reaches the expected states`(): List<DynamicTest> = cases().map { file ->
        DynamicTest.dynamicTest(file.fileName.toString().removeSuffix(".json")) {
            val c = Json.parse(Files.readString(file))
            val limits = c.node("limits")
            val tracker = HealthTracker(settings(c.get("settings")), limits?.int("maxIntegrations") ?: 5000)
            var parser = SseParser()
            var retryMs: Long? = null
            val notes = Json.arr(emptyList())
            fun drain() = tracker.drain().forEach { notes.add(view(it)) }
            fun feed(text: String) {
                parser.push(text).forEach { tracker.applyMessage(it) }
                retryMs = parser.retryMs ?: retryMs
                drain()
            }
            c.get("steps").forEachIndexed { i, step ->
                val at = "${file.fileName} step $i"
                when {
                    step.has("list") -> { tracker.applyList(step.get("list").map(Integration::from)) { n -> step.get("list").first { it.str("id") == n.id }.str("status")!! }; drain() }
                    step.has("event") -> feed("id: ${step.get("event").str("id")}\ndata: ${Json.write(step.get("event").get("data"))}\n\n")
                    step.has("sse") -> feed(step.get("sse").asText())
                    step.str("connection") == "lost" -> parser = SseParser(tracker.lastEventId)
                    step.has("expect") -> {
                        val x = step.get("expect")
                        if (x.has("lastEventId")) assertEquals(x.str("lastEventId"), tracker.lastEventId, "$at: lastEventId")
                        if (x.has("retryMs")) assertEquals(x.long("retryMs"), retryMs, "$at: retryMs")
                        if (x.has("notifications")) assertEquals(x.get("notifications"), notes, "$at: notifications")
                        if (x.has("count")) assertEquals(x.int("count"), tracker.size, "$at: count")
                        if (x.has("resyncRequests")) assertEquals(x.int("resyncRequests"), tracker.resyncRequests, "$at: resyncRequests")
                        if (x.has("openIncidents")) assertEquals(x.get("openIncidents").map { it.asText() }, tracker.openIncidents(), "$at: openIncidents")
                        x.node("absent")?.forEach { assertNull(tracker.entry(it.asText()), "$at: ${it.asText()} absent") }
                        x.node("integrations")?.forEach { want ->
                            val e = tracker.entry(want.str("id")!!) ?: throw AssertionError("$at: ${want.str("id")} in the model")
                            val got = Json.obj()
                            want.fieldNames().forEach { k -> got.set<JsonNode>(k, entryField(e, k)) }
                            assertEquals(want, got, "$at: entry ${want.str("id")}")
                        }
                    }
                    else -> fail<Unit>("$at: unknown step $step")
                }
            }
        }
    }

    @Test
    fun `reconnect json - back-off delays and answers`() {
        val r = Json.parse(Files.readString(dir.resolve("reconnect.json")))
        val p = r.get("policy")
        assertEquals(
            ReconnectPolicy(p.long("initialMs")!!, p.long("maxMs")!!, p.get("factor").asDouble(), p.get("jitter").asDouble(), p.long("maxRetryAfterMs")!!, p.long("unsupportedRetryMs")!!, p.long("stableAfterMs")!!, p.long("idleTimeoutMs")!!),
            ReconnectPolicy.DEFAULT,
        )
        r.get("backoff").forEach { b ->
            assertEquals(b.long("delayMs"), ReconnectPolicy.DEFAULT.delay(b.int("attempt")!!, b.get("random").asDouble(), b.long("retryMs")), "$b")
        }
        r.get("responses").forEach { a ->
            val want = a.get("expect")
            val got = StreamAnswer.of(a.int("status")!!, a.str("contentType"), a.bool("resuming") ?: false, a.str("retryAfter"), now = Instant.now())
            val action = when (got) {
                StreamAnswer.Live -> "live"; StreamAnswer.Unsupported -> "unsupported"; StreamAnswer.Unauthorized -> "unauthorized"
                StreamAnswer.Restart -> "restart"; is StreamAnswer.Retry -> "retry"
            }
            assertEquals(want.str("action"), action, "$a")
            assertEquals(want.long("retryAfterMs"), (got as? StreamAnswer.Retry)?.retryAfterMs, "$a")
        }
    }
}
