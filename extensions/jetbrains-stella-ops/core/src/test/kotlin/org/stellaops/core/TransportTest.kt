package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.net.URI
import java.time.Duration
import java.time.Instant
import java.util.concurrent.CancellationException

class TransportTest {
    @Test
    fun `a request that outlives its timeout fails as offline within the bound`() = LocalServer().use { s ->
        s.route("/slow") { Thread.sleep(5000); reply(200, "{}") }
        val http = HttpTransport(requestTimeout = Duration.ofMillis(300))
        val t0 = System.nanoTime()
        val err = http.send("GET", s.uri.resolvePath("/slow")).failure()
        val ms = (System.nanoTime() - t0) / 1_000_000
        assertTrue(err is OfflineException, "got $err")
        assertTrue(ms < 3000, "took $ms ms")
    }

    @Test
    fun `cancelling aborts an in-flight request`() = LocalServer().use { s ->
        s.route("/slow") { Thread.sleep(5000); reply(200, "{}") }
        val c = Cancellation()
        val f = HttpTransport(requestTimeout = Duration.ofSeconds(30)).send("GET", s.uri.resolvePath("/slow"), cancellation = c)
        Thread.sleep(200)
        val t0 = System.nanoTime()
        c.cancel()
        f.cancel(true)
        assertTrue(f.failure(2) is CancellationException)
        assertTrue((System.nanoTime() - t0) / 1_000_000 < 1000)
    }

    @Test
    fun `a closed port is reported as offline`() {
        val err = HttpTransport().send("GET", URI.create("http://127.0.0.1:${closedPort()}/x")).failure()
        assertTrue(err is OfflineException, "got $err")
    }

    @Test
    fun `Retry-After as seconds and as HTTP date`() {
        assertEquals(Duration.ofSeconds(7), HttpTransport.retryAfter("7"))
        val now = Instant.parse("2026-11-28T12:00:00Z")
        assertEquals(Duration.ofSeconds(30), HttpTransport.retryAfter("Sat, 28 Nov 2026 12:00:30 GMT", now))
        assertNull(HttpTransport.retryAfter("soon"))
    }

    @Test
    fun `error shapes - envelope, problem json, oauth`() {
        val env = HttpTransport.error(HttpResult(422, """{"success":false,"error":{"code":"PROMOTION_BLOCKED","message":"needs approval","validationErrors":[{"field":"x","message":"bad"}]}}""", mapOf()))
        assertEquals("PROMOTION_BLOCKED", env.code); assertEquals("needs approval", env.detail); assertEquals(listOf("bad"), env.validationErrors)
        val prob = HttpTransport.error(HttpResult(429, """{"type":"about:blank","title":"Too Many Requests","status":429,"detail":"slow down"}""", mapOf("Retry-After" to listOf("3"))))
        assertEquals("slow down", prob.detail); assertEquals(Duration.ofSeconds(3), prob.retryAfter)
        val oauth = HttpTransport.error(HttpResult(400, """{"error":"invalid_grant","error_description":"expired"}""", mapOf()))
        assertEquals("invalid_grant", oauth.code); assertEquals("expired", oauth.detail)
    }

    @Test
    fun `the three list shapes of the Orchestrator are accepted`() {
        val bare = Json.parse("""[{"id":"a"}]""")
        val envelope = Json.parse("""{"success":true,"data":[{"id":"a"}],"meta":{"requestId":"r"}}""")
        val paged = Json.parse("""{"data":[{"id":"a"}],"meta":{"page":1,"totalCount":1}}""")
        for (n in listOf(bare, envelope, paged)) assertEquals(listOf("a"), OrchestratorClient.items(n).map { it.str("id") })
        val failed = Json.parse("""{"success":false,"error":{"code":"UNAVAILABLE","message":"down"}}""")
        val e = assertThrows(java.util.concurrent.CompletionException::class.java) { OrchestratorClient.items(failed) }
        assertEquals("UNAVAILABLE", (e.cause as ApiException).code)
    }
}
