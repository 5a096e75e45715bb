package org.stellaops.core

import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.net.URI
import java.util.UUID

/**
 * The integrations client against the real daemon (`stella-integrations`), started by ci.sh with an API key:
 * `STELLA_DAEMON_URL`, `STELLA_DAEMON_KEY`.
 */
class DaemonTest {
    companion object {
        val url: URI by lazy { URI.create(System.getenv("STELLA_DAEMON_URL") ?: throw AssertionError("STELLA_DAEMON_URL is not set: run through ci.sh")) }
        val key: String by lazy { System.getenv("STELLA_DAEMON_KEY") ?: throw AssertionError("STELLA_DAEMON_KEY is not set") }
        fun client(k: String = key) = IntegrationsClient(url, HttpTransport(), StaticBearer(k))

        /** Seeds [n] `inmemory` integrations with unique names and returns them. */
        fun seed(n: Int, behaviour: String = "healthy", prefix: String = "jb-${UUID.randomUUID().toString().take(8)}"): List<Integration> =
            (1..n).map { client().create("inmemory", "$prefix-$it", Json.obj("behaviour" to behaviour)).await() }
    }

    @Test
    fun `create returns the stored integration`() {
        val i = seed(1).single()
        assertEquals("inmemory", i.type)
        assertEquals("acme", i.tenantId)
        assertEquals(HealthStatus.UNKNOWN, i.status)
        assertEquals("healthy", i.config.str("behaviour"))
        assertTrue(i.version!! >= 1)
    }

    @Test
    fun `listing follows nextCursor across pages`() {
        val created = seed(5).map { it.id }.toSet()
        val first = client().page(limit = 2).await()
        assertEquals(2, first.items.size)
        assertNotNull(first.nextCursor, "more than 2 integrations exist, so there is a next page")
        val all = client().all(pageSize = 2).await()
        assertTrue(all.map { it.id }.containsAll(created), "all pages together hold every seeded integration")
        assertEquals(all.size, all.map { it.id }.toSet().size, "no integration twice")
        assertEquals(all.size, client().all(pageSize = 200).await().size)
    }

    @Test
    fun `type filter`() {
        seed(1)
        val inmem = client().all(type = "inmemory").await()
        assertTrue(inmem.isNotEmpty()); assertTrue(inmem.all { it.type == "inmemory" })
        assertEquals(emptyList<Integration>(), client().all(type = "no-such-type-${UUID.randomUUID().toString().take(6)}").await())
    }

    @Test
    fun `health check - a result, or not available (501) until the health engine lands`() {
        val good = seed(1, "healthy").single()
        val bad = seed(1, "unhealthy").single()
        val r = client().healthCheck(good.id).await()
        if (r.supported) {
            assertEquals(HealthStatus.HEALTHY, r.status)
            assertNotNull(r.checkedAt); assertNotNull(r.latencyMs)
            val rb = client().healthCheck(bad.id).await()
            assertEquals(HealthStatus.UNHEALTHY, rb.status)
            val after = client().all().await().associateBy { it.id }
            assertEquals(HealthStatus.HEALTHY, after[good.id]!!.status, "the catalog shows the result of the check")
            // The daemon's thresholds: one failed check degrades, three in a row make it unhealthy.
            assertTrue(
                after[bad.id]!!.status in setOf(HealthStatus.DEGRADED, HealthStatus.UNHEALTHY),
                "the catalog shows the failure: ${after[bad.id]!!.status}",
            )
        } else {
            assertEquals(HealthStatus.UNKNOWN, r.status)
            assertFalse(r.message.isNullOrBlank(), "the daemon's problem detail is kept for the user")
        }
    }

    @Test
    fun `health check of an unknown id is a 404 problem`() {
        val err = client().healthCheck(UUID.randomUUID().toString()).failure() as ApiException
        assertEquals(404, err.status)
    }

    @Test
    fun `a wrong key is rejected with 401`() {
        val err = client("not-a-key").page().failure() as ApiException
        assertEquals(401, err.status)
    }

    @Test
    fun `an invalid create is reported with the daemon's problem detail`() {
        val err = client().create("inmemory", "").failure() as ApiException
        assertTrue(err.status == 400 || err.status == 422, "status ${err.status}")
        assertTrue(err.detail.isNotBlank())
    }

    @Test
    fun `health summary and status bar text from the real catalog`() {
        seed(2)
        val items = client().all().await()
        val h = HealthSummary.of(items)
        assertEquals(items.size, h.total)
        assertEquals("Stella ✓ ${h.healthy} ✗ ${h.failing}", statusText(ConnectionState.CONNECTED, h))
    }
}
