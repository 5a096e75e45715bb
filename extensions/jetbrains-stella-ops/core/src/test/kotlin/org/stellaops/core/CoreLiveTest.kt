package org.stellaops.core

import org.junit.jupiter.api.AfterEach
import org.junit.jupiter.api.Assertions.*
import org.junit.jupiter.api.Test
import java.net.InetSocketAddress
import java.net.URI
import java.time.Duration
import java.util.UUID
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.Executors

/** [StellaOpsCore] with the hub's event stream: what the tool window and the status bar show, and the notifications. */
class CoreLiveTest {
    private val exec = Executors.newScheduledThreadPool(2) { r -> Thread(r, "stella-test-core").apply { isDaemon = true } }
    private val closers = ArrayList<() -> Unit>()

    @AfterEach fun cleanUp() {
        closers.reversed().forEach { runCatching { it() } }
        exec.shutdownNow()
    }

    private val fast = ReconnectPolicy(initialMs = 100, maxMs = 800, jitter = 0.0, unsupportedRetryMs = 60_000)

    private fun core(url: URI, notices: MutableList<HealthNotification>, follow: FollowMode, pinned: List<String> = emptyList(), key: String = DaemonTest.key) =
        StellaOpsCore(
            StellaSettings(serverUrl = FakeServer.uri.toString(), integrationsUrl = url.toString(), follow = follow, pinned = pinned, refreshIntervalSeconds = 3600, requestTimeoutSeconds = 3),
            InMemoryTokenStore(), null, exec, {}, integrationsBearer = StaticBearer(key),
            onHealthNotice = { notices += it }, reconnectPolicy = fast,
        ).also { c -> closers += { c.dispose() } }

    private fun waitUntil(what: String, seconds: Long = 10, f: () -> Boolean) {
        val end = System.nanoTime() + Duration.ofSeconds(seconds).toNanos()
        while (!f()) {
            if (System.nanoTime() > end) throw AssertionError("timed out after $seconds s waiting for $what")
            Thread.sleep(20)
        }
    }

    private fun StellaOpsCore.statusOf(id: String) = state.integrations?.value?.firstOrNull { it.id == id }?.status

    @Test
    fun `the views follow the event stream without polling the list, with one notification for a pinned integration`() {
        val x = DaemonTest.seed(1, prefix = "jb-live-${UUID.randomUUID().toString().take(8)}").single()
        DaemonTest.client().healthCheck(x.id).await()
        val p = DropProxy(InetSocketAddress("127.0.0.1", DaemonTest.url.port)).also { closers += { it.close() } }
        val notices = CopyOnWriteArrayList<HealthNotification>()
        val core = core(p.uri, notices, FollowMode.PINNED, pinned = listOf(x.name))
        val states = CopyOnWriteArrayList<ViewState>()
        core.addListener { states += it }
        core.start()
        waitUntil("live, with x") { core.state.live.mode == LiveMode.LIVE && core.statusOf(x.id) == HealthStatus.HEALTHY }
        assertTrue(core.isPinned(core.state.integrations!!.value.first { it.id == x.id }))
        // At start the first refresh and the stream's opening (no position yet: read the list) may both read it.
        assertTrue(p.listReads() in 1..2, "list reads at start: ${p.listReads()}")
        assertNull(DropProxy.header(p.eventRequests().single(), "Last-Event-ID"))
        val reads = p.listReads()

        DaemonTest.client().json("PUT", "/api/v1/integrations/${x.id}", Json.obj("name" to x.name, "config" to Json.obj("behaviour" to "unhealthy"))).await()
        assertEquals(HealthStatus.UNHEALTHY, DaemonTest.client().healthCheck(x.id).await().status)
        val t0 = System.nanoTime()
        waitUntil("x unhealthy in the view", 2) { core.statusOf(x.id) == HealthStatus.UNHEALTHY }
        assertTrue((System.nanoTime() - t0) / 1_000_000 <= 2000)
        assertEquals(reads, p.listReads(), "no list read: the change came over the stream")
        assertFalse(core.state.integrations!!.stale)
        assertTrue(core.state.health!!.failing >= 1)
        waitUntil("one notification") { notices.isNotEmpty() }
        Thread.sleep(2500) // reminders come every second meanwhile
        val n = notices.filterIsInstance<HealthNotification.IntegrationFailing>().filter { it.integrationId == x.id }
        assertEquals(1, n.size, "$notices")
        assertEquals(x.name, n.single().name)
        assertEquals("provider_degraded", n.single().reason)
        assertEquals("live (event stream)", core.state.live.text)
    }

    @Test
    fun `after a dropped connection the core resumes and the view catches up`() {
        val x = DaemonTest.seed(1, prefix = "jb-drop-${UUID.randomUUID().toString().take(8)}").single()
        DaemonTest.client().healthCheck(x.id).await()
        val p = DropProxy(InetSocketAddress("127.0.0.1", DaemonTest.url.port)).also { closers += { it.close() } }
        val core = core(p.uri, CopyOnWriteArrayList(), FollowMode.ALL)
        core.start()
        waitUntil("live, with x") { core.state.live.mode == LiveMode.LIVE && core.statusOf(x.id) == HealthStatus.HEALTHY }
        // A position to resume from: an event received before the drop. (Without one, the stream reopens at the
        // next event and the list is read instead: see the test above.)
        val y = DaemonTest.seed(1, prefix = "jb-drop-y-${UUID.randomUUID().toString().take(8)}").single()
        DaemonTest.client().healthCheck(y.id).await()
        waitUntil("an event received") { core.tracker.lastEventId != null }
        val position = core.tracker.lastEventId!!
        p.refuse = true
        p.dropAll()
        waitUntil("polling") { core.state.live.mode == LiveMode.POLLING }
        assertTrue(core.state.live.text.startsWith("polling — event stream:"), core.state.live.text)
        DaemonTest.client().json("PUT", "/api/v1/integrations/${x.id}", Json.obj("name" to x.name, "config" to Json.obj("behaviour" to "unhealthy"))).await()
        DaemonTest.client().healthCheck(x.id).await()
        val reads = p.listReads()
        p.refuse = false
        waitUntil("resumed and caught up", 15) { core.state.live.mode == LiveMode.LIVE && core.statusOf(x.id) == HealthStatus.UNHEALTHY }
        assertEquals("resumed after event $position", core.state.live.detail, core.state.live.toString())
        assertEquals(position, DropProxy.header(p.eventRequests().last(), "Last-Event-ID"))
        assertEquals(reads, p.listReads(), "caught up through the replay, not a list read")
    }

    @Test
    fun `a hub without the event stream (404) is polled instead, and a change found by a poll notifies once when followed`() {
        val id = UUID.randomUUID().toString()
        val item = { status: String, at: String -> """{"id":"$id","tenantId":"acme","type":"inmemory","name":"old-hub","config":{},"status":"$status","statusReason":null,"lastCheckedAt":"$at","version":1,"createdAt":"2026-01-01T00:00:00Z","updatedAt":"2026-01-01T00:00:00Z"}""" }
        val list = java.util.concurrent.atomic.AtomicReference(item("healthy", "2026-01-01T00:00:00Z"))
        val hub = LocalServer().also { closers += { it.close() } }
        hub.route("/api/v1/events") { reply(404, """{"title":"Not Found","status":404}""", "Content-Type" to "application/problem+json") }
        hub.route("/api/v1/integrations") { reply(200, """{"items":[${list.get()}],"nextCursor":null}""") }
        val notices = CopyOnWriteArrayList<HealthNotification>()
        val core = core(hub.uri, notices, FollowMode.REFERENCED, key = "any")
        core.start()
        waitUntil("polling") { core.state.live.mode == LiveMode.POLLING }
        assertTrue(core.state.live.detail!!.contains("no event stream"), core.state.live.toString())
        assertEquals(HealthStatus.HEALTHY, core.refresh().await().integrations!!.value.single().status)
        list.set(item("unhealthy", "2026-01-01T00:01:00Z"))
        core.refresh().await()
        assertEquals(HealthStatus.UNHEALTHY, core.statusOf(id))
        assertEquals(0, notices.size, "not followed: stella.yaml does not name it")
        // stella.yaml now names it: the next status change into unhealthy notifies, once.
        core.setReferencedIntegrations(listOf("old-hub"))
        list.set(item("healthy", "2026-01-01T00:02:00Z"))
        core.refresh().await()
        list.set(item("unhealthy", "2026-01-01T00:03:00Z"))
        core.refresh().await(); core.refresh().await()
        assertEquals(1, notices.size, "$notices")
        assertTrue(core.isFollowed(core.state.integrations!!.value.single()))
        assertEquals(1, hub.seen.count { it.path == "/api/v1/events" }, "the stream is not retried before unsupportedRetryMs")
    }
}
